"""Run-time recording of what a storing run touched: the ground truth a stored result is keyed on.

`Recorder` watches one call of the original (the run whose result will be stored) in the current
thread, with a profile hook (``sys.setprofile``) and an audit hook (``sys.addaudithook``):

* **code**: every code object from a user file that executed (strategy, helper modules called as
  ``module.func()``, modules imported inside a function); the file's content is keyed. Code of a
  user module whose source file is unknown (``exec``, ``<string>``) refuses the run;
* **modules**: every user module imported during the run (name -> file; a lookup resolves the name
  again, so a changed ``sys.path`` that would import another file is a miss); the state (globals)
  at the start of the run of every user module whose code ran;
* **environment**: every ``os.environ`` / ``os.getenv`` key read with its value (iterating the
  whole environment refuses the run);
* **files**: every file opened for reading (content keyed); writing a file, listing a directory,
  a socket, a subprocess, an sqlite database refuse the run;
* **clocks and randomness**: ``time.time`` & co., ``datetime.now/utcnow/today``, ``os.urandom``,
  the ``random`` module's shared generator, and any executed user code that names ``now``,
  ``utcnow``, ``today`` (also as a string: ``pd.Timestamp("now")``, ``np.datetime64("today")``),
  ``np.random`` / ``random`` functions or ``secrets``: the run is refused.

Only what user code causes counts: an event is attributed to the innermost frame on the stack that
is user code, Freqtrade's or this plugin's; reads of the versioned code are ignored.

`state_snapshot` / `changed_state` find module-level state a run changed (globals of user modules,
class attributes, objects reachable from them, compared by content): such a run is not stored.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import threading
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freqtrade_opt_plugin.cache.hashing import Unhashable, content_hash


__all__ = ["Recorder", "Recording", "changed_state", "replay_digest", "state_snapshot"]

_PLUGIN_ROOT = str(Path(__file__).resolve().parents[2])

#: C functions whose call makes a result depend on the clock or on entropy.
_CLOCKS = ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
           "process_time", "process_time_ns", "localtime", "gmtime", "ctime", "asctime")
#: Names in executed user code that read the clock or unseeded randomness.
_CLOCK_NAMES = frozenset({"now", "utcnow", "today", "urandom", "getrandbits", "token_bytes",
                          "token_hex", "uuid1", "uuid4", "dt_now"})
_RANDOM_MODULES = frozenset({"random", "secrets"})
_NOW_STRINGS = frozenset({"now", "today", "utcnow"})
#: Audit events that make a run unreusable when user code causes them.
_REFUSED_EVENTS = {
    "os.listdir": "lists a directory", "os.scandir": "lists a directory",
    "glob.glob": "lists a directory", "socket.connect": "opens a network connection",
    "socket.getaddrinfo": "resolves a host name", "urllib.Request": "fetches a URL",
    "subprocess.Popen": "starts a process", "os.system": "starts a process",
    "os.exec": "starts a process", "os.posix_spawn": "starts a process",
    "sqlite3.connect": "opens a database", "os.remove": "removes a file",
    "os.rename": "renames a file", "os.mkdir": "creates a directory",
    "shutil.copyfile": "copies a file", "os.putenv": "sets an environment variable",
    "os.unsetenv": "unsets an environment variable", "exec": "runs exec()",
    "compile": None,  # noted, refused only if the compiled code runs (no source file)
}

_lock = threading.Lock()
_active: list[Recorder] = []  # at most one: the recorder of the running thread
_audit_installed: list[bool] = []
_user_files: dict[str, bool] = {}
_library_roots: list[tuple[str, ...]] = []


def _roots() -> tuple[str, ...]:
    if not _library_roots:
        import sysconfig

        found = set()
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            path = sysconfig.get_paths().get(key)
            if path:
                found.add(str(Path(path).resolve()))
        for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
            found.add(str((Path(prefix) / "lib").resolve()))
        _library_roots.append(tuple(sorted(found)))
    return _library_roots[0]


def is_user_file(filename: str) -> bool:
    """Whether code from `filename` is user code (not a library, Freqtrade or this plugin)."""
    known = _user_files.get(filename)
    if known is not None:
        return known
    if not filename or filename.startswith("<"):
        verdict = False
    else:
        try:
            path = str(Path(filename).resolve())
        except OSError:
            path = filename
        verdict = not (path.startswith(_PLUGIN_ROOT + os.sep)
                       or any(path == root or path.startswith(root + os.sep)
                              for root in _roots()))
    _user_files[filename] = verdict
    return verdict


def _is_freqtrade_file(filename: str) -> bool:
    return (os.sep + "freqtrade" + os.sep) in filename and not is_user_file(filename)


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes ("<absent>" when it cannot be read)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "<absent>"


@dataclass
class Recording:
    """What one recorded run touched (see the module docstring)."""

    files: set[str] = field(default_factory=set)  # user source files whose code ran
    opened: set[str] = field(default_factory=set)  # files user code opened for reading
    imported: set[str] = field(default_factory=set)  # modules imported during the run
    env: dict[str, str | None] = field(default_factory=dict)  # env var -> value read
    namespaces: dict[int, dict] = field(default_factory=dict)  # globals of user code that ran
    problems: list[str] = field(default_factory=list)  # reasons not to store the result

    def refuse(self, reason: str) -> None:
        if reason not in self.problems:
            self.problems.append(reason)


_NO_ATTRIBUTE = object()
_ENV_GETITEM = os._Environ.__getitem__.__code__
_ENV_ITER = os._Environ.__iter__.__code__
_ENV_LEN = os._Environ.__len__.__code__


def _clock_functions() -> dict[Any, str]:
    import datetime
    import random
    import time

    found: dict[Any, str] = {}
    for name in _CLOCKS:
        if hasattr(time, name):
            found[getattr(time, name)] = f"time.{name}()"
    for cls in (datetime.datetime, datetime.date):
        for name in ("now", "utcnow", "today"):
            if hasattr(cls, name):
                found[getattr(cls, name)] = f"{cls.__name__}.{name}()"
    found[os.urandom] = "os.urandom()"
    if hasattr(os, "getrandom"):
        found[os.getrandom] = "os.getrandom()"
    shared = random._inst  # type: ignore[attr-defined]
    for name in ("random", "getrandbits", "seed", "getstate"):
        found[getattr(shared, name)] = f"random.{name}() (the shared, unseeded generator)"
    return found


class Recorder:
    """Context manager recording what user code touches during one call (current thread)."""

    #: False only to measure what the profile hook costs (benchmarks): nothing is then recorded
    #: but module state and audit events, so results must not be stored with it.
    profile_hook = True

    def __init__(self, keyed: Iterable[dict] = (), gate: Any = None,
                 gate_classes: Iterable[type] = ()) -> None:
        """`keyed`: namespaces whose code and state the caller's key already covers (the
        strategy's modules); they are watched for changes like every user module.

        With `gate` (a strategy), the profile hook is on only while one of the methods its user
        classes `gate_classes` define runs (and what they call): the engine's own loop runs at
        full speed. Without it, it is on for the whole call."""
        self.keyed = {id(namespace): namespace for namespace in keyed}
        self._gate = gate
        self._gate_classes = tuple(gate_classes)
        self._gated: dict[str, Any] = {}
        self._depth = 0
        self.recording = Recording()
        self._codes: dict[int, types.CodeType] = {}
        self._module_codes: set[int] = set()
        #: content digests per name of the user namespaces at the start of the run (and of the
        #: modules imported during it, as their import left them)
        self.start_state: dict[int, dict[str, str]] = {}
        self.imported_namespaces: dict[int, dict] = {}
        self._clocks = _clock_functions()
        self._previous: Any = None
        self._busy = False
        self._nested = False
        self.watched: dict[int, dict] = {}
        self._thread = threading.get_ident()

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        _install_audit_hook()
        with _lock:
            self._nested = bool(_active)
            if not self._nested:
                _active.append(self)
        if self._nested:  # e.g. a replacement calling another recorded one: store neither
            self.recording.refuse("another run is being recorded in this process")
            self.watched = {}
            return self
        self.watched = {**user_module_namespaces(), **self.keyed}
        self.start_state = state_snapshot(self.watched.values())
        self._previous = sys.getprofile()
        if self._previous is not None:
            self.recording.refuse("a profiler is active (the run cannot be recorded)")
        if not self.profile_hook:
            self.recording.refuse("the profile hook is off (benchmark)")
        elif self._gate is None:
            sys.setprofile(self._profile)
        else:
            self._install_gates()
        return self

    def _install_gates(self) -> None:
        attributes = vars(self._gate)
        names = {name for cls in self._gate_classes for name, value in vars(cls).items()
                 if isinstance(value, (types.FunctionType, staticmethod, classmethod))
                 and not (name.startswith("__") and name.endswith("__"))}
        for name in sorted(names):
            self._gated[name] = attributes.get(name, _NO_ATTRIBUTE)
            attributes[name] = self._gated_method(getattr(self._gate, name))

    def _gated_method(self, method: Any) -> Any:
        recorder = self

        @functools.wraps(method)
        def gated(*args: Any, **kwargs: Any) -> Any:
            if recorder._depth:
                return method(*args, **kwargs)
            recorder._depth += 1
            sys.setprofile(recorder._profile)
            try:
                return method(*args, **kwargs)
            finally:
                sys.setprofile(None)
                recorder._depth -= 1

        return gated

    def _remove_gates(self) -> None:
        attributes = vars(self._gate)
        for name, saved in self._gated.items():
            if saved is _NO_ATTRIBUTE:
                attributes.pop(name, None)
            else:
                attributes[name] = saved
        self._gated.clear()

    def __exit__(self, *exc: object) -> None:
        if self._nested:
            return
        if self._gate is not None:
            self._remove_gates()
        sys.setprofile(self._previous)
        with _lock:
            _active.remove(self)

    def changed(self) -> list[str]:
        """Globals and class attributes of user modules the run changed (by content)."""
        namespaces = {**self.watched, **self.imported_namespaces}
        return changed_state(self.start_state, namespaces)

    def finish(self) -> tuple[dict[str, Any], str]:
        """(manifest, digest of the values read) of the run, for storing its result.

        Raises `Unhashable` naming the first reason the result must not be stored."""
        rec = self.recording
        if rec.problems:
            raise Unhashable(rec.problems[0])
        changed = self.changed()
        if changed:
            raise Unhashable(f"the run changed module-level state ({', '.join(changed[:3])}), "
                             "which a stored result would not restore")
        states = []
        for ident, namespace in rec.namespaces.items():
            name = str(namespace.get("__name__"))
            digests = self.start_state.get(ident, {})
            bad = next((key for key, digest in digests.items()
                        if digest.startswith("<unhashable")), None)
            if bad is not None:
                raise Unhashable(f"module state {name}.{bad} cannot be hashed by content "
                                 f"({digests[bad]})")
            if ident in self.keyed:
                continue
            module = sys.modules.get(name)
            if module is None or vars(module) is not namespace:
                raise Unhashable(f"code of a module that cannot be imported by name ran ({name})")
            kind = "imported" if ident in self.imported_namespaces else "loaded"
            states.append((name, kind, _state_digest(self.start_state[ident])))
        record = {
            "files": sorted(str(Path(f).resolve()) for f in rec.files | rec.opened),
            "modules": sorted(rec.imported),
            "env": sorted(rec.env),
            "states": [list(state) for state in sorted(states)],
        }
        digest = _digest(record, rec.env, [(name, d) for name, _, d in sorted(states)])
        return record, digest

    # -- the profile hook (hot: every call and return in the thread) ----------------------------
    def _profile(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            if id(code) in self._codes:
                return
            if code is _ENV_GETITEM or code is _ENV_ITER or code is _ENV_LEN:
                self._environ(frame, code)
                return
            self._codes[id(code)] = code  # held: its id stays unique
            self._first_call(frame, code)
        elif event == "return":
            if id(frame.f_code) in self._module_codes:
                self._imported(frame)
        elif event == "c_call":
            try:
                label = self._clocks.get(arg)
            except TypeError:
                return
            if label is not None and self._user_caused(frame):
                self.recording.refuse(f"user code calls {label}")

    def _first_call(self, frame: types.FrameType, code: types.CodeType) -> None:
        if not is_user_file(code.co_filename) or self._busy:
            return
        self._busy = True
        try:
            rec = self.recording
            rec.files.add(code.co_filename)
            namespace = frame.f_globals
            rec.namespaces.setdefault(id(namespace), namespace)
            if code.co_name == "<module>":
                self._module_codes.add(id(code))
            marker = code_marker(code)
            if marker is not None:
                rec.refuse(f"{code.co_qualname} ({code.co_filename}) {marker}")
        finally:
            self._busy = False

    def _imported(self, frame: types.FrameType) -> None:
        """A user module finished importing during the run: its state as a fresh import leaves
        it (what a later change is compared with, and what a lookup expects)."""
        namespace = frame.f_globals
        if id(namespace) not in self.start_state:
            self._busy = True
            try:
                self.start_state.update(state_snapshot([namespace]))
                self.imported_namespaces[id(namespace)] = namespace
            finally:
                self._busy = False

    def _environ(self, frame: types.FrameType, code: types.CodeType) -> None:
        if self._busy or not self._user_caused(frame.f_back):
            return
        if code is _ENV_GETITEM:
            key = frame.f_locals.get("key")
            if isinstance(key, str):
                self.recording.env[key] = os.environ.get(key)
                return
        self.recording.refuse("user code reads the whole environment (os.environ)")

    def _user_caused(self, frame: types.FrameType | None) -> bool:
        """Whether the innermost user-or-Freqtrade frame from `frame` outwards is user code."""
        while frame is not None:
            filename = frame.f_code.co_filename
            if is_user_file(filename):
                return True
            if _is_freqtrade_file(filename) or filename.startswith(_PLUGIN_ROOT + os.sep):
                return False  # versioned code (this plugin: its telemetry's clock, settings)
            frame = frame.f_back
        return False

    # -- the audit hook (rare events) ---------------------------------------------------------
    def audit(self, event: str, args: tuple, frame: types.FrameType | None) -> None:
        """`frame`: the Python frame whose operation raised the event."""
        if self._busy or threading.get_ident() != self._thread:
            return
        self._busy = True
        try:
            if event == "open":
                self._open(args, frame)
            elif event == "import":
                if self._user_caused(frame):
                    self.recording.imported.add(str(args[0]))
            else:
                reason = _REFUSED_EVENTS.get(event)
                if reason is not None and self._user_caused(frame):
                    self.recording.refuse(f"user code {reason} ({event})")
        finally:
            self._busy = False

    def _open(self, args: tuple, frame: types.FrameType | None) -> None:
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        if not isinstance(path, (str, bytes, os.PathLike)):
            return  # an already open descriptor
        path = os.fsdecode(path)
        if path.endswith(".pyc") or not is_user_file(path) or not self._user_caused(frame):
            return
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing:
            self.recording.refuse(f"user code writes the file {path}")
        else:
            self.recording.opened.add(str(Path(path).resolve()))


_WATCHED_EVENTS = frozenset({"open", "import", *_REFUSED_EVENTS})


def _audit(event: str, args: tuple) -> None:
    if _active and event in _WATCHED_EVENTS:
        _active[0].audit(event, args, sys._getframe(1))


def _install_audit_hook() -> None:
    with _lock:
        if not _audit_installed:
            sys.addaudithook(_audit)  # cannot be removed: inert while no recorder is active
            _audit_installed.append(True)


# -- what executed code names ----------------------------------------------------------------
_markers: dict[types.CodeType, str | None] = {}


def code_marker(code: types.CodeType) -> str | None:
    """Why `code` makes a run depend on the clock, randomness or dynamic code, else None."""
    if code in _markers:
        return _markers[code]
    found = None
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, str) and const.strip().lower() in _NOW_STRINGS:
            found = f"uses the string {const!r} (the current time)"
            break
    if found is None and names & _CLOCK_NAMES:
        found = f"uses '{sorted(names & _CLOCK_NAMES)[0]}' (the clock or entropy)"
    if found is None:
        found = _random_use(code, names)
    if found is None and names & {"exec", "eval", "compile", "__import__"}:
        found = f"calls '{sorted(names & {'exec', 'eval', 'compile', '__import__'})[0]}'"
    _markers[code] = found
    return found


def _random_use(code: types.CodeType, names: set[str]) -> str | None:
    """`random` / `secrets` named anywhere (a module, ``np.random``, ``from random import``)."""
    if names & _RANDOM_MODULES:
        return f"uses '{sorted(names & _RANDOM_MODULES)[0]}' (unseeded randomness)"
    return None


# -- module-level state ----------------------------------------------------------------------
def _deep_fallback(value: Any) -> Any:
    """Content of a non-plain value in module state, the same in every process.

    Instances of user classes (and ``SimpleNamespace``, ``deque``) by their attributes, modules,
    functions and classes by name (their code is keyed by file), any other library object by its
    type only: state inside third-party objects (loggers, locks, clients) is not tracked."""
    import collections

    if isinstance(value, types.ModuleType):
        return ("module", value.__name__)
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type, types.MethodType,
                          functools.partial)):
        return ("code", getattr(value, "__module__", None), getattr(value, "__qualname__", None))
    if isinstance(value, collections.deque):
        return ("deque", list(value))
    if isinstance(value, types.SimpleNamespace) or _is_user_class(type(value)):
        attributes = getattr(value, "__dict__", None)
        slots = {name: getattr(value, name, None) for cls in type(value).__mro__
                 for name in getattr(cls, "__slots__", ()) if isinstance(name, str)}
        return (type(value).__qualname__, dict(attributes or {}), slots)
    return ("object", type(value).__module__, type(value).__qualname__)


def _is_user_class(cls: type) -> bool:
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None) if module is not None else None
    if filename is None:  # a strategy module Freqtrade loaded without sys.modules
        function = next((v for v in vars(cls).values() if isinstance(v, types.FunctionType)),
                        None)
        filename = function.__code__.co_filename if function is not None else None
    return bool(filename) and is_user_file(filename)


def value_digest(value: Any) -> str:
    """Content digest of a value of module state (see `_deep_fallback`)."""
    try:
        return content_hash(value, fallback=_deep_fallback)
    except (Unhashable, RecursionError, ValueError, TypeError) as exc:
        return f"<unhashable: {type(value).__qualname__}: {exc}>"


def _names(namespace: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    for name, value in list(namespace.items()):
        if name.startswith("__") and name.endswith("__"):
            continue
        if isinstance(value, type) and value.__module__ == namespace.get("__name__"):
            for attribute, member in list(vars(value).items()):  # user class attributes
                if not (attribute.startswith("__") and attribute.endswith("__")) and not (
                        callable(member) or isinstance(member, (staticmethod, classmethod,
                                                                property))):
                    yield f"{name}.{attribute}", member
            continue
        yield name, value


def state_snapshot(namespaces: Iterable[dict]) -> dict[int, dict[str, str]]:
    """Per namespace (by id), a content digest of every global and user class attribute."""
    return {id(namespace): {name: value_digest(value) for name, value in _names(namespace)}
            for namespace in namespaces}


def changed_state(before: Mapping[int, Mapping[str, str]],
                  namespaces: Mapping[int, dict]) -> list[str]:
    """``module.name`` of every global or class attribute whose content changed since `before`."""
    changed = []
    for ident, digests in before.items():
        namespace = namespaces.get(ident)
        if namespace is None:
            continue
        now = {name: value_digest(value) for name, value in _names(namespace)}
        module = namespace.get("__name__", "?")
        for name in sorted(set(digests) | set(now)):
            if digests.get(name) != now.get(name):
                changed.append(f"{module}.{name}")
    return changed


def user_module_namespaces() -> dict[int, dict]:
    """Globals of every loaded user module (by id)."""
    found = {}
    for module in list(sys.modules.values()):
        filename = getattr(module, "__file__", None)
        if isinstance(module, types.ModuleType) and filename and is_user_file(filename):
            found[id(vars(module))] = vars(module)
    return found


# -- the manifest of a recording -------------------------------------------------------------
def _module_file(name: str) -> str:
    module = sys.modules.get(name)
    filename = getattr(module, "__file__", None) if module is not None else None
    if filename is None:
        import importlib.util

        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            spec = None
        filename = getattr(spec, "origin", None)
    return str(Path(filename).resolve()) if filename else "<not found>"


def _state_digest(digests: Mapping[str, str]) -> str:
    return content_hash(sorted(digests.items()))


def _current_state(name: str) -> str | None:
    module = sys.modules.get(name)
    if module is None:
        return None
    namespace = vars(module)
    return _state_digest(state_snapshot([namespace])[id(namespace)])


def replay_digest(record: Mapping[str, Any]) -> str:
    """Digest of a manifest's reads evaluated now (equal to the recorded one if unchanged)."""
    states = []
    for name, kind, digest in record["states"]:
        current = _current_state(name)
        if current is None:  # a fresh import gives the recorded state; else it was loaded
            current = digest if kind == "imported" else "<absent>"
        states.append((name, current))
    env = {key: os.environ.get(key) for key in record["env"]}
    return _digest(record, env, states)


def _digest(record: Mapping[str, Any], env: Mapping[str, str | None],
            states: list[tuple[str, str]]) -> str:
    files = [(path, file_digest(path)) for path in record["files"]]
    modules = [(name, _module_file(name)) for name in record["modules"]]
    return content_hash(files, modules, [(k, env.get(k)) for k in record["env"]], states)
