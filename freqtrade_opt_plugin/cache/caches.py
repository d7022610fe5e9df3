"""The four specialized caches (ohlcv, analysis, temporary, backtesting) and their status.

Each cache is a diskcache ``Cache`` in ``<state_dir>/cache/<name>`` (or ``$FREQTRADE_OPT_CACHE_DIR
/<name>``), created mode 0700 and refused when group or others may write it. Values go through
`SafeDisk` (Arrow / npy / JSON, never pickle). Several processes (hyperopt workers) may use a
cache at once: SQLite in WAL mode serializes writers, readers never wait.

Eviction: diskcache's ``least-recently-stored`` policy, made approximately least-recently-*used*
by refreshing the store time of entries this process read, in one batched transaction (before a
cull, at most every `REFRESH_INTERVAL` seconds, and at exit). Reads stay pure reads: diskcache's own
``least-recently-used`` policy turns every read into a write transaction, which measured 3-10x
fewer reads per second and up to a second of lock wait with 2-4 processes
(``benchmarks/bench_cache.py --eviction``). Culling is done here after a store (``cull_limit=0``
for diskcache) so that evictions can be counted and stay minimal: expired entries go first, then
the oldest, one at a time until the volume is under the limit.

Failure policy: a cache whose directory is unsafe, unwritable, full, locked beyond the timeout or
whose database is corrupt logs ONE warning (naming the directory and the error) and is bypassed
for the rest of the process: lookups miss, stores are skipped, results are unchanged. A single
corrupt entry is removed (one warning) and counts as a miss.

Shared tier: with ``FREQTRADE_OPT_CACHE_REDIS_URL`` set, a lookup the local cache misses asks Redis
(`redis_tier.RedisTier`), and a hit there is copied into the local cache; a stored value goes to
both. Redis being down, slow, full or read-only never changes a result (see ``redis_tier.py``).

Statistics (hits, misses, stores, evictions, ...) are counted in memory and added to
``stats.sqlite3`` in the cache directory every few seconds and at exit, so `get_cache_status()`
(and ``freqtrade-opt cache status``) shows the totals of every process that used the cache.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import diskcache

from freqtrade_opt_plugin.cache.disk import (
    CorruptEntry,
    Encoded,
    NotCacheable,
    SafeDisk,
    decode,
    encode,
    estimate_memory,
)
from freqtrade_opt_plugin.cache.redis_tier import Fetched, RedisTier
from freqtrade_opt_plugin.cache.settings import (
    CACHE_NAMES,
    ENV_PREFIX,
    CacheSettings,
    load_cache_settings,
)
from freqtrade_opt_plugin.cache.stats import (
    add_counts,
    read_counts,
    read_refusals,
    remove_cache_files,
    remove_stats,
)
from freqtrade_opt_plugin.paths import UnsafeDirectoryError, ensure_private_dir, state_dir


logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_NAMES",
    "MISSING",
    "SpecializedCache",
    "clear_cache",
    "configure",
    "get_cache",
    "get_cache_status",
]

EVICTION_POLICY = "least-recently-stored"
REFRESH_INTERVAL = 5.0  # seconds between batched recency refreshes of entries read
STATS_INTERVAL = 2.0  # seconds between flushes of this process's counters
MIN_FILE_SIZE = 2**15  # values from 32 KiB are files next to the database
COUNTERS = ("hits", "misses", "stores", "evictions", "expired", "not_cacheable", "errors",
            # the shared tier: hits (also in "hits"), lookups that missed, stores, entries
            # refused (corrupt/foreign), stores skipped (too large, read-only, full, down),
            # and the microseconds spent asking it
            "redis_hits", "redis_misses", "redis_stores", "redis_refused", "redis_skipped",
            "redis_lookups", "redis_us")
MAX_CORRUPT_WARNINGS = 5  # per cache and process; further ones are logged at debug level


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


class SpecializedCache:
    """One named, size-bounded, TTL-expiring, multi-process disk cache."""

    def __init__(self, name: str, directory: Path, size_limit: int, ttl: float,
                 timeout: float, enabled: bool = True, shared: RedisTier | None = None) -> None:
        self.name = name
        self.directory = Path(directory)
        self.size_limit = int(size_limit)
        self.ttl = float(ttl)
        self.timeout = float(timeout)
        self.enabled = enabled
        self.bypassed: str | None = None
        self._lock = threading.RLock()
        self._cache: diskcache.Cache | None = None
        self._pid = os.getpid()
        self._counts = dict.fromkeys(COUNTERS, 0)  # not yet flushed to the stats file
        self._last_stats_flush = time.monotonic()
        self._pending_refresh: set[str] = set()
        self._last_refresh = time.monotonic()
        self._corrupt_warnings = 0
        self.shared = shared if enabled else None
        self._refusals: dict[str, int] = {}  # reason -> results not stored (unflushed)

    # -- opening and failing ------------------------------------------------------------------
    def _open(self) -> diskcache.Cache | None:
        if not self.enabled or self.bypassed is not None:
            return None
        if self._cache is not None and self._pid == os.getpid():
            return self._cache
        with self._lock:
            return self._open_locked()

    def _open_locked(self) -> diskcache.Cache | None:
        if self.bypassed is not None:
            return None
        if self._pid != os.getpid():  # forked: never reuse the parent's SQLite connection,
            if self._cache is not None:  # nor count its unflushed statistics twice
                _ORPHANS.append(self._cache)
                self._cache = None
            self._counts = dict.fromkeys(COUNTERS, 0)
            self._refusals = {}
            self._pending_refresh.clear()
            self._pid = os.getpid()
        if self._cache is not None:
            return self._cache
        _register_exit_flush()
        try:
            for directory in _private_ancestors(self.directory):
                ensure_private_dir(directory)
            self._cache = diskcache.Cache(
                str(self.directory),
                timeout=self.timeout,
                disk=SafeDisk,
                eviction_policy=EVICTION_POLICY,
                size_limit=self.size_limit,
                cull_limit=0,
                statistics=0,
                disk_min_file_size=MIN_FILE_SIZE,
            )
        except Exception as exc:  # noqa: BLE001 - any failure: bypass, never break the run
            self._fail("cannot open it", exc)
            return None
        return self._cache

    def _fail(self, action: str, exc: BaseException) -> None:
        """Bypass this cache for the rest of the process, with one warning."""
        self._count("errors")
        if self.bypassed is not None:
            return
        reason = _describe(exc)
        self.bypassed = f"{action}: {reason}"
        hint = ""
        if isinstance(exc, UnsafeDirectoryError):
            hint = f" Fix the permissions or set {ENV_PREFIX}DIR to a private directory."
        elif isinstance(exc, sqlite3.DatabaseError) and not isinstance(
            exc, sqlite3.OperationalError
        ):
            hint = f" Run 'freqtrade-opt cache clear {self.name}' to reset it."
        logger.warning(
            "freqtrade-opt cache '%s' at %s is bypassed (%s); results are unaffected, only not "
            "cached.%s", self.name, self.directory, self.bypassed, hint,
        )
        cache, self._cache = self._cache, None
        if cache is not None:
            try:
                cache.close()
            except Exception:  # noqa: BLE001
                pass

    # -- counters -----------------------------------------------------------------------------
    def _count(self, counter: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[counter] += amount
            due = time.monotonic() - self._last_stats_flush >= STATS_INTERVAL
        if due:
            self.flush_stats()

    def flush_stats(self) -> None:
        """Add this process's counters to the shared stats file (best effort)."""
        with self._lock:
            pending = {k: v for k, v in self._counts.items() if v}
            refusals = dict(self._refusals)
            self._last_stats_flush = time.monotonic()
            if not pending or not self.directory.is_dir():
                return
            try:
                add_counts(self.directory, self.timeout, pending, refusals)
            except (sqlite3.Error, OSError) as exc:
                logger.debug("cache '%s': stats not flushed: %s", self.name, exc)
                return
            for key, value in pending.items():
                self._counts[key] -= value
            for reason, count in refusals.items():
                self._refusals[reason] -= count
                if not self._refusals[reason]:
                    del self._refusals[reason]

    def counters(self) -> dict[str, int]:
        """Totals of every process (the stats file) plus this process's unflushed counts."""
        totals = read_counts(self.directory, self.timeout, COUNTERS)
        with self._lock:
            for key, value in self._counts.items():
                totals[key] += value
        return totals

    # -- recency refresh (approximate LRU without a write per read) ----------------------------
    def _note_read(self, key: str) -> None:
        with self._lock:
            self._pending_refresh.add(key)
            due = time.monotonic() - self._last_refresh >= REFRESH_INTERVAL
        if due:
            self._refresh()

    def _refresh(self) -> None:
        with self._lock:
            keys, self._pending_refresh = self._pending_refresh, set()
            self._last_refresh = time.monotonic()
        cache = self._cache
        if not keys or cache is None or self._pid != os.getpid():
            return
        try:
            now = time.time()
            with cache.transact():
                sql = cache._sql  # diskcache's statement runner (no public API for this)
                for key in keys:
                    sql("UPDATE Cache SET store_time = ? WHERE key = ? AND raw = 1", (now, key))
        except Exception as exc:  # noqa: BLE001 - recency is a hint: never fail for it
            logger.debug("cache '%s': recency refresh skipped: %s", self.name, exc)

    # -- the API ------------------------------------------------------------------------------
    def get(self, key: str, default: Any = MISSING) -> Any:
        """The stored value for `key` (local tier, then the shared one), or `default` (a miss,
        also when bypassed)."""
        cache = self._open()
        if cache is None and self.shared is None:
            return default
        if cache is not None:
            value = self._get_local(cache, key)
            if value is not MISSING:
                self._count("hits")
                self._note_read(key)
                return value
        if self.shared is not None:
            value = self._get_shared(cache, key)
            if value is not MISSING:
                self._count("hits")
                return value
        self._count("misses")
        return default

    def _get_local(self, cache: diskcache.Cache, key: str) -> Any:
        try:
            return cache.get(key, default=MISSING, retry=False)
        except CorruptEntry as exc:
            self._corrupt(cache, key, exc)
        except Exception as exc:  # noqa: BLE001
            self._fail("cannot read it", exc)
        return MISSING

    def _get_shared(self, cache: diskcache.Cache | None, key: str) -> Any:
        tier = self.shared
        assert tier is not None
        found = tier.fetch(self.name, key)
        if found.payload is None and found.refused is None:
            waited = tier.claim(self.name, key)  # take the lock, or wait for its holder
            found = Fetched(waited.payload, waited.refused, found.seconds + waited.seconds)
        self._count("redis_lookups")
        self._count("redis_us", int(found.seconds * 1e6))
        if found.payload is None:
            if found.refused is not None:
                self._refused(found.refused)
            self._count("redis_misses")
            return MISSING
        try:
            value = decode(found.payload)
        except CorruptEntry as exc:  # sealed, yet not a valid entry: a writer's bug or worse
            rkey = tier.entry_key(self.name, key)
            tier.remove(rkey)
            self._refused(f"{rkey}: {exc}")
            self._count("redis_misses")
            return MISSING
        self._count("redis_hits")
        if cache is not None:  # copy it into the local tier (its bytes, not encoded again)
            self._store_local(cache, key, Encoded(found.payload, estimate_memory(value)), None)
        return value

    def _refused(self, detail: str) -> None:
        self._count("redis_refused")
        self._count("errors")
        self._warn_corrupt("freqtrade-opt cache '%s': refused and removed the shared entry %s; "
                           "it is recomputed, results are unaffected.", self.name, detail)

    def set(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store `value` under `key` for `ttl` seconds (default: the cache's) in the local tier
        and the shared one. False if stored in neither."""
        cache = self._open()
        tier = self.shared
        if cache is None and tier is None:
            return False
        try:
            encoded = encode(value)
        except NotCacheable as exc:
            self._count("not_cacheable")
            logger.debug("cache '%s': value not cached: %s", self.name, exc)
            if tier is not None:
                tier.release(self.name, key)
            return False
        stored = cache is not None and self._store_local(cache, key, encoded, ttl)
        if tier is not None:
            why = tier.store(self.name, key, encoded.payload)
            if why is None:
                self._count("redis_stores")
                stored = True
            else:
                self._count("redis_skipped")
                logger.debug("cache '%s': not stored in Redis (%s)", self.name, why)
            tier.release(self.name, key)
        return stored

    def _store_local(self, cache: diskcache.Cache, key: str, encoded: Encoded,
                     ttl: float | None) -> bool:
        if encoded.size > self.size_limit // 2:
            self._count("not_cacheable")
            logger.debug("cache '%s': value of %d bytes exceeds half the %d-byte limit; not "
                         "cached locally", self.name, encoded.size, self.size_limit)
            return False
        if self._cache is not cache:  # bypassed meanwhile
            return False
        try:
            cache.set(key, encoded, expire=self.ttl if ttl is None else float(ttl), retry=False)
            self._count("stores")
            if cache.volume() > self.size_limit:
                self._cull(cache)
        except Exception as exc:  # noqa: BLE001 - full disk, read-only, locked, corrupt...
            self._fail("cannot write it", exc)
            return False
        return True

    def refuse(self, reason: str) -> None:
        """Count a result that is not stored because it may not be reused (`reason` says why;
        the latest reasons are kept in the stats file and listed by ``cache status``)."""
        self._count("not_cacheable")
        with self._lock:
            self._refusals[reason] = self._refusals.get(reason, 0) + 1

    def refusals(self) -> list[tuple[str, int]]:
        """(reason, count) of the results not stored, all processes, most frequent first."""
        found = read_refusals(self.directory, self.timeout)
        with self._lock:
            for reason, count in self._refusals.items():
                found[reason] = found.get(reason, 0) + count
        return sorted(found.items(), key=lambda item: (-item[1], item[0]))

    def skip(self, reason: str) -> None:
        """Count a result the caller chose not to store (e.g. over its size budget)."""
        self._count("not_cacheable")
        logger.debug("cache '%s': not stored: %s", self.name, reason)
        if self.shared is not None:
            self.shared.release(self.name)  # let other machines compute it

    def _cull(self, cache: diskcache.Cache) -> None:
        """Remove expired entries, then the least recently stored/read ones, until under the
        limit (one at a time: diskcache's own ``cull`` removes ten per round)."""
        self._refresh()
        expired = cache.expire(retry=False)
        if expired:
            self._count("expired", expired)
        evicted = 0
        while cache.volume() > self.size_limit:
            rows = cache._sql(  # diskcache's statement runner: no public "oldest key" API
                "SELECT key FROM Cache WHERE raw = 1 ORDER BY store_time LIMIT 1"
            ).fetchall()
            if not rows:
                break
            evicted += bool(cache.delete(rows[0][0], retry=False))
        if evicted:
            self._count("evictions", evicted)

    def _corrupt(self, cache: diskcache.Cache, key: str, exc: Exception) -> None:
        self._count("errors")
        where = str(exc) if str(self.directory) in str(exc) else (
            f"key {key} in {self.directory / 'cache.db'}: {exc}")
        self._warn_corrupt("freqtrade-opt cache '%s': removed a corrupt entry (%s); it is "
                           "recomputed, results are unaffected.", self.name, where)
        try:
            cache.delete(key, retry=False)
        except Exception as exc2:  # noqa: BLE001 - e.g. a tampered file name: bypass the cache
            self._fail("cannot remove a corrupt entry", exc2)

    def _warn_corrupt(self, message: str, *args: Any) -> None:
        self._corrupt_warnings += 1
        if self._corrupt_warnings <= MAX_CORRUPT_WARNINGS:
            logger.warning(message, *args)
        else:
            logger.debug(message, *args)

    def delete(self, key: str) -> bool:
        """Remove `key` from the local tier and (if this user may write) the shared one."""
        if self.shared is not None:
            self.shared.remove(self.shared.entry_key(self.name, key))
            self.shared.release(self.name, key)
        cache = self._open()
        if cache is None:
            return False
        try:
            return bool(cache.delete(key, retry=False))
        except Exception as exc:  # noqa: BLE001
            self._fail("cannot delete from it", exc)
            return False

    def clear(self) -> int:
        """Remove every entry and reset the statistics; returns the number of entries removed.

        A cache that cannot be opened (e.g. a corrupt database) is reset by deleting the files
        this plugin and diskcache create in its directory, and nothing else.
        """
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)
            self._refusals = {}
            self._pending_refresh.clear()
        removed = 0
        if not self.directory.is_dir() and self._cache is None:
            return 0  # never created: nothing to clear (and nothing is created)
        cache = self._open()
        if cache is not None:
            try:
                removed = cache.clear(retry=True)
            except Exception as exc:  # noqa: BLE001
                self._fail("cannot clear it", exc)
        if cache is None or self.bypassed is not None:
            removed = remove_cache_files(self.directory)
            self.bypassed = None
            self._cache = None
        remove_stats(self.directory)
        return removed

    def expire(self) -> int:
        cache = self._open()
        if cache is None:
            return 0
        try:
            count = cache.expire(retry=False)
        except Exception as exc:  # noqa: BLE001
            self._fail("cannot expire entries", exc)
            return 0
        if count:
            self._count("expired", count)
        return count

    def close(self) -> None:
        """Flush pending recency refreshes and statistics and close the connection."""
        if self.shared is not None:
            self.shared.release(self.name)
        if self._pid == os.getpid():
            self._refresh()
            self.flush_stats()
        cache, self._cache = self._cache, None
        if cache is not None and self._pid == os.getpid():
            try:
                cache.close()
            except Exception:  # noqa: BLE001
                pass

    def size(self) -> tuple[int, int]:
        """(entries, bytes) of the local tier, expired entries removed first; a cache whose
        directory does not exist yet is empty (and not created)."""
        if not (self.directory.is_dir() or self._cache is not None):
            return 0, 0
        self.expire()
        self.flush_stats()
        cache = self._open()
        if cache is not None:
            try:
                return len(cache), cache.volume()
            except Exception as exc:  # noqa: BLE001
                self._fail("cannot read its size", exc)
        return 0, 0

    def status(self) -> dict[str, Any]:
        """Figures of this cache (all processes) in both tiers (`status.cache_figures`)."""
        from freqtrade_opt_plugin.cache.status import cache_figures

        return cache_figures(self)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, diskcache.Timeout):
        return "locked by another process beyond the timeout"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


# -- the process-wide registry -----------------------------------------------------------------
_ORPHANS: list[diskcache.Cache] = []  # parent connections inherited through fork: never reused
_registry_lock = threading.Lock()
_settings: CacheSettings | None = None
_caches: dict[str, SpecializedCache] = {}
_tier: list[RedisTier] = []  # the process's shared tier (one, when a URL is configured)


def _section_from_environment() -> Mapping[str, Any] | None:
    from freqtrade_opt_plugin.settings import section_from_environment

    section = section_from_environment()
    if isinstance(section, Mapping):
        cache_section = section.get("cache")
        return cache_section if cache_section is not None else None
    return None


def cache_root(settings: CacheSettings | None = None) -> Path:
    """The directory holding the caches' directories."""
    settings = settings or get_settings()
    if settings.dir is not None and str(settings.dir):
        return Path(settings.dir).expanduser()
    return state_dir() / "cache"


def get_settings() -> CacheSettings:
    """The cache settings of this process (loaded on first use)."""
    global _settings
    with _registry_lock:
        if _settings is None:
            _settings = load_cache_settings(_section_from_environment())
        return _settings


def configure(section: Mapping[str, Any] | None = None) -> CacheSettings:
    """(Re)load the settings, e.g. with the config section ``freqtrade_opt.cache``.

    Open caches are flushed and closed; the next `get_cache` uses the new settings.
    """
    global _settings
    new = load_cache_settings(section if section is not None else _section_from_environment())
    with _registry_lock:
        old = list(_caches.values())
        _caches.clear()
        _settings = new
        tiers, _tier[:] = list(_tier), []
    for cache in old:
        cache.close()
    for tier in tiers:
        tier.close()
    return new


def shared_tier(settings: CacheSettings | None = None) -> RedisTier | None:
    """The process's Redis tier (None without ``redis_url``); call with the registry lock."""
    settings = settings or _settings
    if settings is None or not settings.enabled or not settings.redis_url:
        return None
    if not _tier:
        _tier.append(RedisTier(settings))
    return _tier[0]


def get_cache(name: str) -> SpecializedCache:
    """The process's instance of cache `name` (one of `CACHE_NAMES`)."""
    if name not in CACHE_NAMES:
        raise ValueError(f"unknown cache {name!r}; accepted: {', '.join(CACHE_NAMES)}")
    settings = get_settings()
    with _registry_lock:
        cache = _caches.get(name)
        if cache is None:
            cache = SpecializedCache(
                name,
                cache_root(settings) / name,
                size_limit=settings.size_limit(name),
                ttl=settings.ttl(name),
                timeout=settings.timeout_seconds,
                enabled=settings.enabled,
                shared=shared_tier(settings) if settings.shares(name) else None,
            )
            _caches[name] = cache
        return cache


def clear_cache(name: str | None = None) -> dict[str, int]:
    """Remove all entries of cache `name` (all caches when None); entries removed per cache."""
    names = CACHE_NAMES if name is None else (name,)
    return {n: get_cache(n).clear() for n in names}


def get_cache_status() -> dict[str, Any]:
    """Per-cache figures, the shared tier's, an aggregate and recommendations (`status.py`)."""
    from freqtrade_opt_plugin.cache.status import cache_status

    caches = {name: get_cache(name).status() for name in CACHE_NAMES}
    settings = get_settings()
    with _registry_lock:
        tier = shared_tier(settings)
    return cache_status(caches, tier)


_exit_flush_pid: list[int] = []


def _register_exit_flush() -> None:
    """Flush statistics when this process ends, also as a multiprocessing child (fork, spawn,
    loky hyperopt workers), which ends through ``os._exit`` without running ``atexit``."""
    pid = os.getpid()
    if _exit_flush_pid == [pid]:
        return
    _exit_flush_pid[:] = [pid]
    try:
        import multiprocessing.util

        multiprocessing.util.Finalize(None, _close_all, exitpriority=10)
    except Exception:  # noqa: BLE001 - best effort
        pass


@atexit.register
def _close_all() -> None:
    with _registry_lock:
        caches = list(_caches.values())
    for cache in caches:
        try:
            cache.close()
        except Exception:  # noqa: BLE001 - never fail interpreter exit
            pass


def _private_ancestors(directory: Path) -> list[Path]:
    """`directory`, its parent, and the state directory when it lies below it: each must be
    private (README: a state directory writable by others is refused, for caches too)."""
    found = [directory.parent, directory]
    state = state_dir()
    try:
        below_state = directory.resolve().is_relative_to(state.resolve())
    except OSError:
        below_state = False
    if below_state and state.resolve() not in {p.resolve() for p in found}:
        found.insert(0, state)
    return found
