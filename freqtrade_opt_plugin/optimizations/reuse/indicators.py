"""Indicator reuse: skip ``populate_indicators`` when nothing it depends on has changed.

`cached_advise_all_indicators(strategy, data)` returns exactly what Freqtrade's
``IStrategy.advise_all_indicators(data)`` returns, pair by pair, from the 'analysis' cache when an
entry exists, else by calling the original for that pair and storing the result.

What a pair's entry is keyed on
-------------------------------
* **static** (per strategy class): the source text and the loaded code objects of every user
  module involved (the strategy's module, user base classes' modules and user modules they import,
  transitively), the versions of third-party packages those modules import, the class's qualified
  name, the fingerprints of the Freqtrade internals the pipeline goes through, and the plugin,
  Freqtrade, pandas, numpy, pyarrow and Python versions;
* **state**: the content of every strategy attribute the indicator code reads (``self.<name>``
  found by walking the AST of ``populate_indicators``, ``@informative`` methods and the methods
  and module functions they call, plus the attributes Freqtrade's own pipeline reads: e.g. a
  hyperoptable parameter with its value and search range, ``timeframe``), and of the plain-data
  globals of user modules. When ``self`` escapes that analysis (passed to a function, ``getattr``,
  ``vars(self)``, a property, a Freqtrade method called on it) the content of *all* instance
  attributes and user class data attributes is used instead. ``config`` and ``dp`` are recorded
  (below), ``wallets`` may not be used. So changing ``stoploss``, ROI or an entry-only parameter
  keeps the entries; changing a parameter the indicators read does not;
* **input**: the pair name and the full content of the pair's candles (`content_hash`);
* **what the run read**, recorded while the original ran: every config value it looked up (path by
  path, e.g. ``exchange.use_public_trades``; iterating a dict makes all of it a dependency) and
  every DataProvider call (informative pairs: ``get_pair_dataframe``/``historic_ohlcv``/... with
  their arguments and the full content of what they returned). A lookup first reads this
  *manifest* (stored under the static/state/input key), re-evaluates each recorded read against the
  current config and DataProvider, and only then looks up the frame under a key that includes
  those values. A run that reads the same values takes the same path (the code is deterministic,
  see below), so it computes the same frame.

When it does not cache (and says why at debug level)
----------------------------------------------------
* FreqAI enabled, ``exchange.use_public_trades`` (trades data), or an unverified Freqtrade
  internal (a changed ``advise_indicators`` etc.);
* the code reachable from ``populate_indicators`` / ``@informative`` methods (through ``self.x()``
  calls and module functions of user modules) calls something time-, randomness-, environment-,
  network- or file-dependent (``now``, ``random``, ``open``, ``read_csv``, ``requests``,
  ``os.environ``, ``self.freqai``...), or its source is unavailable;
* a state attribute whose content cannot be hashed (an arbitrary object), or a config value read
  that cannot be hashed;
* the run changed the strategy's state (an attribute, a class attribute, a plain-data module
  global), wrote to the config, used ``self.wallets`` or a DataProvider method that is not a pure
  read (``send_msg``, ``ticker``, ``orderbook``, private attributes...);
* the result would not come back identical from disk (`disk.encode` verifies every store).

* what the pair's run touched at run time (`recording`): user files whose code ran, modules
  imported, env vars and files read, the state of user modules whose code ran; a run the
  recording refuses (clock, randomness, writes...) or that changed module-level state (e.g. filled
  a module-level object a callback reads later) is not stored.

Limits (what is trusted, not proven): third-party libraries (TA-Lib, technical, pandas-ta...) are
assumed to be deterministic functions of their inputs for a given version; state inside
third-party objects held by user modules is compared by type only.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from freqtrade_opt_plugin.cache.caches import MISSING, get_cache, get_settings
from freqtrade_opt_plugin.cache.decorators import make_key
from freqtrade_opt_plugin.cache.disk import estimate_memory
from freqtrade_opt_plugin.cache.hashing import Unhashable, content_hash
from freqtrade_opt_plugin.optimizations.reuse import recording
from freqtrade_opt_plugin.optimizations.reuse.reads import (
    _DataProviderRecorder,
    _manifest,
    _Reads,
    _recorded_digest,
    _RecordingDict,
    _replayed_digest,
    _Tripwire,
)
from freqtrade_opt_plugin.optimizations.reuse.state import (
    _identity_hash,
    _mutation_digest,
    _state_digest,
)
from freqtrade_opt_plugin.optimizations.reuse.user_code import (
    _cacheable_plan,
    _check_internals,
    _class_plan,
    _ClassPlan,
)


logger = logging.getLogger("freqtrade_opt_plugin.cache.indicators")

__all__ = [
    "CACHE_NAME",
    "cached_advise_all_indicators",
    "indicator_cache_key",
    "original_advise_all_indicators",
    "strategy_cacheability",
    "strategy_identity",
    "strategy_sources",
]

CACHE_NAME = "analysis"
BUDGET_SHARE = 0.8  # at most this share of the cache for one advise_all_indicators call
TARGET = "freqtrade.strategy.interface:IStrategy.advise_all_indicators"
ENTRY_SCHEMA = "indicators/2"

_reported: set[tuple[str, str]] = set()


def _debug_once(strategy_name: str, reason: str) -> None:
    if (strategy_name, reason) not in _reported:
        _reported.add((strategy_name, reason))
        logger.debug("freqtrade-opt indicator cache: %s: not cached: %s", strategy_name, reason)


# -- the entry point ---------------------------------------------------------------------------
def original_advise_all_indicators() -> Callable[[Any, dict], dict]:
    """Freqtrade's own ``IStrategy.advise_all_indicators`` (below any installed router)."""
    from freqtrade.strategy.interface import IStrategy

    func = inspect.unwrap(IStrategy.advise_all_indicators)
    if getattr(func, "__module__", "").startswith("freqtrade_opt_plugin"):
        raise RuntimeError("the original advise_all_indicators is not reachable")
    return func


def strategy_cacheability(strategy: Any) -> str | None:
    """None if indicators of `strategy` may be cached, else the reason they are not."""
    if not _check_internals():
        return "Freqtrade internals differ from the verified 2026.9 sources"
    config = getattr(strategy, "config", None)
    if not isinstance(config, dict):
        return "strategy has no config dict"
    if (config.get("freqai") or {}).get("enabled", False):
        return "FreqAI is enabled"
    if (config.get("exchange") or {}).get("use_public_trades", False):
        return "exchange.use_public_trades is on (trades data is not keyed)"
    plan = _class_plan(type(strategy))
    if plan.digest is None:
        return plan.reason
    return None


def strategy_identity(strategy: Any) -> str:
    """Digest of everything the strategy's code may depend on besides config, data and ``dp``.

    That is all of its user code (every method of its user classes and the user modules they
    reach, scanned for nondeterminism, trade-loop callbacks included), the libraries' versions,
    and its whole state (instance attributes, user class data, plain-data module globals).
    Raises `Unhashable` naming the reason when that cannot be established.
    """
    plan = _cacheable_plan(strategy, whole=True)
    return content_hash(plan.digest, _state_digest(strategy, plan))


def strategy_sources(strategy: Any) -> list[str]:
    """Source texts of the strategy's user code, as hashed by `strategy_identity` (raises
    `Unhashable` like it)."""
    return list(_cacheable_plan(strategy, whole=True).sources)


def indicator_cache_key(strategy: Any, pair: str, pair_data: pd.DataFrame) -> str:
    """The manifest key of one pair (static + state + input); raises `Unhashable`."""
    plan = _cacheable_plan(strategy)
    return make_key("indicators-manifest/1", plan.digest, _state_digest(strategy, plan), pair,
                    content_hash(pair_data))


def cached_advise_all_indicators(
    original: Callable[[Any, dict], dict],
    strategy: Any,
    data: dict[str, pd.DataFrame],
) -> dict[str, pd.DataFrame]:
    """``strategy.advise_all_indicators(data)``, reusing cached per-pair results when valid.

    `original` (what runs without this optimization) computes what is not reused, pair by pair,
    recorded; its exceptions propagate unchanged, marked by `router.call_original`. A failure of
    the caching machinery itself raises (the Router then runs `original`).
    """
    from freqtrade_opt_plugin.router import call_original

    original = functools.partial(call_original, original)
    prepared = _prepare(strategy)
    if prepared is None:
        return original(strategy, data)
    cache, plan = prepared

    from freqtrade.strategy.strategy_validation import StrategyResultValidator

    name = type(strategy).__name__
    result: dict[str, pd.DataFrame] = {}
    reused = 0
    # This call's entries must fit in the cache together, or each run would evict the entries
    # the next run needs (and be slower than no cache): pairs beyond the budget are not stored.
    budget = _Budget(int(cache.size_limit * BUDGET_SHARE))
    for pair, pair_data in data.items():
        try:
            manifest_key: str | None = indicator_cache_key(strategy, pair, pair_data)
        except Unhashable as exc:
            _refuse(cache, name, str(exc))
            manifest_key = None
        if manifest_key is None:
            result[pair] = original(strategy, {pair: pair_data})[pair]
            continue
        frame = _lookup(cache, strategy, manifest_key)
        if frame is not None:
            validator = StrategyResultValidator(pair_data,
                                                warn_only=strategy.disable_dataframe_checks)
            validator.assert_df(frame)  # as the original does (same frames: same outcome)
            result[pair] = frame
            reused += 1
            budget.used += estimate_memory(frame)
            continue
        result[pair] = _compute_and_store(cache, strategy, plan, original, pair, pair_data,
                                          manifest_key, budget)
    if reused:
        logger.info("freqtrade-opt: reused cached indicators of %d/%d pairs for %s", reused,
                    len(data), name)
    return result


def _prepare(strategy: Any) -> tuple[Any, _ClassPlan] | None:
    """(cache, class plan) when this strategy's indicators may be cached, else None."""
    settings = get_settings()
    if not (settings.enabled and settings.indicators):
        return None
    cache = get_cache(CACHE_NAME)
    if cache.bypassed is not None:
        return None
    reason = strategy_cacheability(strategy)
    if reason is not None:
        _refuse(cache, type(strategy).__name__, reason)
        return None
    return cache, _class_plan(type(strategy))


def _refuse(cache: Any, strategy_name: str, reason: str) -> None:
    """Indicators that are not stored: logged once per reason, listed by ``cache status``."""
    cache.refuse(f"{strategy_name}: {reason}")
    _debug_once(strategy_name, reason)


def _lookup(cache: Any, strategy: Any, manifest_key: str) -> pd.DataFrame | None:
    manifest = cache.get(manifest_key)
    if manifest is MISSING:
        return None
    try:
        replayed = _replayed_digest(manifest, strategy.config, vars(strategy).get("dp"))
        runtime = recording.replay_digest(manifest["runtime"])
    except Exception as exc:  # noqa: BLE001 - an unusable manifest is a miss
        logger.debug("freqtrade-opt indicator cache: manifest not usable (%s)", exc)
        return None
    frame = cache.get(make_key(ENTRY_SCHEMA, manifest_key, replayed, runtime))
    if frame is MISSING or not isinstance(frame, pd.DataFrame):
        return None
    return frame


@dataclass
class _Budget:
    limit: int
    used: int = 0


def _compute_and_store(cache: Any, strategy: Any, plan: _ClassPlan, original: Callable,
                       pair: str, pair_data: pd.DataFrame, manifest_key: str,
                       budget: _Budget) -> pd.DataFrame:
    name = type(strategy).__name__
    attributes = vars(strategy)
    config = attributes.get("config")
    if type(config) is not dict:
        _refuse(cache, name, "the strategy's config is not an instance attribute dict")
        return original(strategy, {pair: pair_data})[pair]
    reads = _Reads()
    state_before = _mutation_digest(strategy)
    config_before = _identity_hash(config)
    swapped: dict[str, Any] = {"config": _RecordingDict(config, (), reads)}
    if attributes.get("dp") is not None:
        swapped["dp"] = _DataProviderRecorder(attributes["dp"], reads)
    if attributes.get("wallets") is not None:
        swapped["wallets"] = _Tripwire(attributes["wallets"], "self.wallets", reads)
    saved = {key: attributes[key] for key in swapped}
    recorder = recording.Recorder(plan.namespaces)
    attributes.update(swapped)
    try:
        with recorder:
            frame = original(strategy, {pair: pair_data})[pair]
    finally:
        attributes.update(saved)
    _store(cache, strategy, reads, recorder, config, state_before, config_before, frame, pair,
           manifest_key, budget)
    return frame


def _store(cache: Any, strategy: Any, reads: _Reads, recorder: recording.Recorder,
           config: dict, state_before: str, config_before: str, frame: pd.DataFrame, pair: str,
           manifest_key: str, budget: _Budget) -> None:
    name = type(strategy).__name__
    try:
        if reads.problems:
            raise Unhashable(reads.problems[0])
        if _identity_hash(config) != config_before:
            raise Unhashable("the run changed the config")
        if _mutation_digest(strategy) != state_before:
            raise Unhashable("populate_indicators changed the strategy's state")
        runtime, runtime_digest = recorder.finish()
        entry_key = make_key(ENTRY_SCHEMA, manifest_key, _recorded_digest(reads, config),
                             runtime_digest)
    except Unhashable as exc:
        _refuse(cache, name, str(exc))
        return
    size = estimate_memory(frame)
    if budget.used + size > budget.limit:
        cache.skip(f"{name} {pair}: this run's indicators exceed {BUDGET_SHARE:.0%} of the "
                   f"'{CACHE_NAME}' cache ({cache.size_limit / 2**20:.0f} MB); raise "
                   f"FREQTRADE_OPT_CACHE_{CACHE_NAME.upper()}_SIZE_MB to cache every pair")
        return
    budget.used += size
    if cache.set(entry_key, frame):
        cache.set(manifest_key, {**_manifest(reads), "runtime": runtime})
        logger.debug("freqtrade-opt indicator cache: stored %s %s", name, pair)
