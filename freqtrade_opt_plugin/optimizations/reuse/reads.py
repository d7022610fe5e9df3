"""Recording what indicator code reads from the config and the DataProvider, the manifest of a
stored entry, and replaying it against the current config and DataProvider."""

from __future__ import annotations

import enum
import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from freqtrade_opt_plugin.cache.hashing import Unhashable, content_hash
from freqtrade_opt_plugin.optimizations.reuse.state import _ABSENT, _fallback


#: DataProvider members that are pure reads (replayed to validate an entry).
_DP_CALLS = frozenset({
    "get_pair_dataframe", "historic_ohlcv", "get_analyzed_dataframe", "market",
    "current_whitelist", "get_required_startup", "get_funding_rate_timeframe",
})
_DP_ATTRIBUTES = frozenset({"runmode"})


# -- recording what a run reads ----------------------------------------------------------------
class _Reads:
    """Config paths and DataProvider calls observed during one pair's run."""

    def __init__(self) -> None:
        self.config: dict[tuple, str] = {}  # path -> "value" | "dict" | "present"
        self.dp_calls: list[tuple[str, list, dict, str]] = []
        self.dp_attributes: list[tuple[str, str]] = []
        self.problems: list[str] = []

    def read(self, path: tuple, mode: str) -> None:
        if not all(type(p) in (str, int) for p in path):
            self.problems.append(f"config key of unsupported type at {path!r}")
            return
        if self.config.get(path) != "value":  # "value" subsumes "dict" and "present"
            self.config[path] = mode


class _RecordingDict(dict):
    """A config (sub)dict that records what is read and writes through to the original."""

    def __init__(self, origin: dict, path: tuple, reads: _Reads) -> None:
        super().__init__(origin)
        self._origin = origin
        self._path = path
        self._reads = reads

    def _value(self, key: Any, value: Any) -> Any:
        path = self._path + (key,)
        if type(value) is dict:
            self._reads.read(path, "dict")
            return _RecordingDict(value, path, self._reads)
        self._reads.read(path, "value")
        return value

    def _all(self) -> None:
        self._reads.read(self._path, "value")

    def __getitem__(self, key: Any) -> Any:
        try:
            value = dict.__getitem__(self, key)
        except KeyError:
            self._reads.read(self._path + (key,), "value")
            raise
        return self._value(key, value)

    def get(self, key: Any, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return self._value(key, dict.__getitem__(self, key))
        self._reads.read(self._path + (key,), "value")
        return default

    def __contains__(self, key: Any) -> bool:
        self._reads.read(self._path + (key,), "present")
        return dict.__contains__(self, key)

    def _write(self, what: str) -> None:
        self._reads.problems.append(f"writes to the config ({what} at {self._path!r})")

    def __setitem__(self, key: Any, value: Any) -> None:
        self._write(f"set {key!r}")
        self._origin[key] = value
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self._write(f"delete {key!r}")
        del self._origin[key]
        dict.__delitem__(self, key)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if not dict.__contains__(self, key):
            self._write(f"setdefault {key!r}")
            self._origin[key] = default
            dict.__setitem__(self, key, default)
        return self._value(key, dict.__getitem__(self, key))

    def pop(self, key: Any, *default: Any) -> Any:
        self._write(f"pop {key!r}")
        self._origin.pop(key, *default)
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple:
        self._write("popitem")
        item = dict.popitem(self)
        self._origin.pop(item[0], None)
        return item

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._write("update")
        self._origin.update(*args, **kwargs)
        dict.update(self, *args, **kwargs)

    def clear(self) -> None:
        self._write("clear")
        self._origin.clear()
        dict.clear(self)

    def __ior__(self, other: Any) -> _RecordingDict:
        self.update(other)
        return self

    def keys(self):  # noqa: D102 - dict API
        self._all()
        return dict.keys(self)

    def values(self):  # noqa: D102
        self._all()
        return dict.values(self)

    def items(self):  # noqa: D102
        self._all()
        return dict.items(self)

    def __iter__(self):
        self._all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._all()
        return dict.__len__(self)

    def __eq__(self, other: object) -> bool:
        self._all()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self._all()
        return dict.__ne__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> dict:
        self._all()
        return dict(dict.items(self))

    def __or__(self, other: Any) -> dict:
        self._all()
        return dict.__or__(dict(dict.items(self)), other)

    def __repr__(self) -> str:
        self._all()
        return dict.__repr__(self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        self._all()
        return (dict, (dict(dict.items(self)),))


def _encode_argument(value: Any) -> Any:
    if isinstance(value, enum.Enum) and type(value).__module__.startswith("freqtrade.enums"):
        return {"$enum": f"{type(value).__module__}:{type(value).__qualname__}",
                "value": value.value}
    if value is None or type(value) in (bool, int, float, str):
        return value
    raise Unhashable(f"DataProvider argument of type {type(value).__qualname__}")


def _decode_argument(value: Any) -> Any:
    if isinstance(value, dict):
        module_name, _, qualname = str(value.get("$enum", "")).partition(":")
        if not module_name.startswith("freqtrade.enums"):
            raise ValueError(f"refusing to rebuild {value!r}")
        cls = getattr(importlib.import_module(module_name), qualname)
        return cls(value["value"])
    return value


class _DataProviderRecorder:
    """Stands in for ``strategy.dp`` during a run: records pure reads, flags everything else."""

    def __init__(self, dp: Any, reads: _Reads) -> None:
        object.__setattr__(self, "_dp", dp)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name: str) -> Any:
        dp, reads = self._dp, self._reads
        value = getattr(dp, name)
        if name in _DP_ATTRIBUTES:
            try:
                reads.dp_attributes.append((name, content_hash(value)))
            except Unhashable:
                reads.problems.append(f"reads dp.{name} (unhashable)")
            return value
        if name in _DP_CALLS and callable(value):
            def call(*args: Any, **kwargs: Any) -> Any:
                result = value(*args, **kwargs)
                try:
                    encoded = ([_encode_argument(a) for a in args],
                               {k: _encode_argument(v) for k, v in kwargs.items()})
                    reads.dp_calls.append((name, *encoded, content_hash(result)))
                except Unhashable as exc:
                    reads.problems.append(f"dp.{name}: {exc}")
                return result

            return call
        reads.problems.append(f"uses dp.{name}")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        self._reads.problems.append(f"sets dp.{name}")
        setattr(self._dp, name, value)

    def __bool__(self) -> bool:
        return bool(self._dp)


class _Tripwire:
    """Stands in for an object whose use makes the run uncacheable (e.g. ``self.wallets``)."""

    def __init__(self, target: Any, label: str, reads: _Reads) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_label", label)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name: str) -> Any:
        self._reads.problems.append(f"uses {self._label}.{name}")
        return getattr(self._target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._reads.problems.append(f"sets {self._label}.{name}")
        setattr(self._target, name, value)

    def __bool__(self) -> bool:
        return bool(self._target)


# -- manifests: the reads of a stored entry, and their current values ---------------------------
def _manifest(reads: _Reads) -> dict[str, Any]:
    return {
        "config": [[list(path), mode] for path, mode in sorted(
            reads.config.items(), key=lambda item: repr(item[0]))],
        "dp": [[name, args, kwargs] for name, args, kwargs, _ in reads.dp_calls],
        "dp_attributes": [name for name, _ in reads.dp_attributes],
    }


def _config_value(config: Mapping, path: Iterable[Any], mode: str) -> Any:
    node: Any = config
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return (_ABSENT, mode)
        node = node[key]
    if mode == "present":
        return ("present", mode)
    if mode == "dict":
        return ("dict" if type(node) is dict else type(node).__qualname__, mode)
    return content_hash(node, fallback=_fallback)


def _recorded_digest(reads: _Reads, config: Mapping) -> str:
    """Digest of the values a run read, as they were (config: as it is now, unchanged by it)."""
    config_part = [(list(path), mode, _config_value(config, path, mode))
                   for path, mode in sorted(reads.config.items(), key=lambda i: repr(i[0]))]
    dp_part = [(name, args, kwargs, digest) for name, args, kwargs, digest in reads.dp_calls]
    return content_hash(config_part, dp_part, reads.dp_attributes)


def _replayed_digest(manifest: Mapping[str, Any], config: Mapping, dp: Any) -> str:
    """Digest of the manifest's reads evaluated now (raises on anything unexpected)."""
    config_part = []
    for path, mode in sorted(manifest["config"], key=lambda i: repr(tuple(i[0]))):
        if mode not in ("value", "dict", "present"):
            raise ValueError(f"unknown read mode {mode!r}")
        config_part.append((list(path), mode, _config_value(config, path, mode)))
    dp_part = []
    for name, args, kwargs in manifest["dp"]:
        if name not in _DP_CALLS or dp is None:
            raise ValueError(f"cannot replay dp.{name}")
        result = getattr(dp, name)(*[_decode_argument(a) for a in args],
                                   **{k: _decode_argument(v) for k, v in kwargs.items()})
        dp_part.append((name, args, kwargs, content_hash(result)))
    attributes = []
    for name in manifest["dp_attributes"]:
        if name not in _DP_ATTRIBUTES or dp is None:
            raise ValueError(f"cannot replay dp.{name}")
        attributes.append((name, content_hash(getattr(dp, name))))
    return content_hash(config_part, dp_part, attributes)
