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

Statistics (hits, misses, stores, evictions, ...) are counted in memory and added to
``stats.sqlite3`` in the cache directory every few seconds and at exit, so `get_cache_status()`
(and ``freqtrade-opt cache status``) shows the totals of every process that used the cache.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import diskcache

from freqtrade_opt_plugin.cache.disk import CorruptEntry, NotCacheable, SafeDisk, encode
from freqtrade_opt_plugin.cache.settings import (
    CACHE_NAMES,
    ENV_PREFIX,
    CacheSettings,
    load_cache_settings,
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
STATS_FILE = "stats.sqlite3"
REFUSALS_SHOWN = 5  # reasons listed per cache by `status`
MIN_FILE_SIZE = 2**15  # values from 32 KiB are files next to the database
COUNTERS = ("hits", "misses", "stores", "evictions", "expired", "not_cacheable", "errors")
_KNOWN_FILES = re.compile(r"cache\.db(-wal|-shm|-journal)?|stats\.sqlite3(-wal|-shm|-journal)?")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


class SpecializedCache:
    """One named, size-bounded, TTL-expiring, multi-process disk cache."""

    def __init__(self, name: str, directory: Path, size_limit: int, ttl: float,
                 timeout: float, enabled: bool = True) -> None:
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
        self._warned_corrupt = False
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
                with _stats_connection(self.directory, self.timeout) as con:
                    con.executemany(
                        "INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) "
                        "DO UPDATE SET value = value + excluded.value",
                        list(pending.items()),
                    )
                    con.executemany(
                        "INSERT INTO refusals(reason, count) VALUES (?, ?) ON CONFLICT(reason) "
                        "DO UPDATE SET count = count + excluded.count",
                        list(refusals.items()),
                    )
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
        totals = dict.fromkeys(COUNTERS, 0)
        if (self.directory / STATS_FILE).is_file():
            try:
                with _stats_connection(self.directory, self.timeout) as con:
                    for name, value in con.execute("SELECT name, value FROM counters"):
                        if name in totals and isinstance(value, int):
                            totals[name] += value
            except (sqlite3.Error, OSError) as exc:
                logger.debug("cache '%s': stats unreadable: %s", self.name, exc)
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
        """The stored value for `key`, or `default` (a miss, also when bypassed)."""
        cache = self._open()
        if cache is None:
            return default
        try:
            value = cache.get(key, default=MISSING, retry=False)
        except CorruptEntry as exc:
            self._corrupt(cache, key, exc)
            self._count("misses")
            return default
        except Exception as exc:  # noqa: BLE001
            self._fail("cannot read it", exc)
            return default
        if value is MISSING:
            self._count("misses")
            return default
        self._count("hits")
        self._note_read(key)
        return value

    def set(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store `value` under `key` for `ttl` seconds (default: the cache's). False if not."""
        if self._open() is None:
            return False
        try:
            encoded = encode(value)
        except NotCacheable as exc:
            self._count("not_cacheable")
            logger.debug("cache '%s': value not cached: %s", self.name, exc)
            return False
        if encoded.size > self.size_limit // 2:
            self._count("not_cacheable")
            logger.debug("cache '%s': value of %d bytes exceeds half the %d-byte limit; not "
                         "cached", self.name, encoded.size, self.size_limit)
            return False
        cache = self._cache
        if cache is None:
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
        found: dict[str, int] = {}
        if (self.directory / STATS_FILE).is_file():
            try:
                with _stats_connection(self.directory, self.timeout) as con:
                    for reason, count in con.execute("SELECT reason, count FROM refusals"):
                        found[str(reason)] = int(count)
            except (sqlite3.Error, OSError) as exc:
                logger.debug("cache '%s': stats unreadable: %s", self.name, exc)
        with self._lock:
            for reason, count in self._refusals.items():
                found[reason] = found.get(reason, 0) + count
        return sorted(found.items(), key=lambda item: (-item[1], item[0]))

    def skip(self, reason: str) -> None:
        """Count a result the caller chose not to store (e.g. over its size budget)."""
        self._count("not_cacheable")
        logger.debug("cache '%s': not stored: %s", self.name, reason)

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
        if not self._warned_corrupt:
            self._warned_corrupt = True
            logger.warning(
                "freqtrade-opt cache '%s' at %s: a corrupt entry was removed (%s); it is "
                "recomputed, results are unaffected.", self.name, self.directory, exc,
            )
        try:
            cache.delete(key, retry=False)
        except Exception as exc2:  # noqa: BLE001 - e.g. a tampered file name: bypass the cache
            self._fail("cannot remove a corrupt entry", exc2)

    def delete(self, key: str) -> bool:
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
            removed = _remove_cache_files(self.directory)
            self.bypassed = None
            self._cache = None
        try:
            (self.directory / STATS_FILE).unlink(missing_ok=True)
            for suffix in ("-wal", "-shm"):
                (self.directory / (STATS_FILE + suffix)).unlink(missing_ok=True)
        except OSError:
            pass
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
        if self._pid == os.getpid():
            self._refresh()
            self.flush_stats()
        cache, self._cache = self._cache, None
        if cache is not None and self._pid == os.getpid():
            try:
                cache.close()
            except Exception:  # noqa: BLE001
                pass

    def status(self) -> dict[str, Any]:
        """Figures of this cache (all processes): entries, size, hits, misses, evictions...

        A cache whose directory does not exist yet is reported empty (and not created)."""
        exists = self.directory.is_dir() or self._cache is not None
        if exists:
            self.expire()
            self.flush_stats()
        entries, volume = 0, 0
        cache = self._open() if exists else None
        if cache is not None:
            try:
                entries, volume = len(cache), cache.volume()
            except Exception as exc:  # noqa: BLE001
                self._fail("cannot read its size", exc)
        counts = self.counters()
        lookups = counts["hits"] + counts["misses"]
        return {
            "name": self.name,
            "directory": str(self.directory),
            "enabled": self.enabled,
            "bypassed": self.bypassed,
            "entries": entries,
            "size_mb": round(volume / 2**20, 3),
            "limit_mb": round(self.size_limit / 2**20, 3),
            "ttl_seconds": self.ttl,
            "hits": counts["hits"],
            "misses": counts["misses"],
            "hit_rate": round(counts["hits"] / lookups, 4) if lookups else None,
            "stores": counts["stores"],
            "evictions": counts["evictions"],
            "expired": counts["expired"],
            "not_cacheable": counts["not_cacheable"],
            "errors": counts["errors"],
            "refusals": [{"reason": reason, "count": count}
                         for reason, count in self.refusals()[:REFUSALS_SHOWN]],
        }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, diskcache.Timeout):
        return "locked by another process beyond the timeout"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


class _StatsConnection:
    def __init__(self, directory: Path, timeout: float) -> None:
        self._con = sqlite3.connect(str(directory / STATS_FILE), timeout=timeout,
                                    isolation_level=None)

    def __enter__(self) -> sqlite3.Connection:
        con = self._con
        con.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER)")
        con.execute("CREATE TABLE IF NOT EXISTS refusals (reason TEXT PRIMARY KEY, count INTEGER)")
        con.execute("BEGIN IMMEDIATE")
        return con

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._con.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._con.close()


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


def _stats_connection(directory: Path, timeout: float) -> _StatsConnection:
    return _StatsConnection(directory, timeout)


def _remove_cache_files(directory: Path) -> int:
    """Delete what diskcache and this module create in `directory` (nothing else)."""
    removed = 0
    if not directory.is_dir():
        return 0
    for entry in directory.iterdir():
        try:
            if entry.is_file() and _KNOWN_FILES.fullmatch(entry.name):
                entry.unlink()
            elif entry.is_dir() and re.fullmatch(r"[0-9a-f]{2}", entry.name):
                for sub in entry.iterdir():
                    if sub.is_dir() and re.fullmatch(r"[0-9a-f]{2}", sub.name):
                        for value in sub.iterdir():
                            if re.fullmatch(r"[0-9a-f]{28}\.val", value.name):
                                value.unlink()
                                removed += 1
                        _rmdir_if_empty(sub)
                _rmdir_if_empty(entry)
        except OSError as exc:
            logger.warning("freqtrade-opt cache: could not remove %s: %s", entry, exc)
    return removed


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


# -- the process-wide registry -----------------------------------------------------------------
_ORPHANS: list[diskcache.Cache] = []  # parent connections inherited through fork: never reused
_registry_lock = threading.Lock()
_settings: CacheSettings | None = None
_caches: dict[str, SpecializedCache] = {}


def _section_from_environment() -> Mapping[str, Any] | None:
    try:
        from freqtrade_opt_plugin.settings import section_from_environment
    except ImportError:  # pragma: no cover - the lead's module is part of the package
        return None
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
    for cache in old:
        cache.close()
    return new


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
            )
            _caches[name] = cache
        return cache


def clear_cache(name: str | None = None) -> dict[str, int]:
    """Remove all entries of cache `name` (all caches when None); entries removed per cache."""
    names = CACHE_NAMES if name is None else (name,)
    return {n: get_cache(n).clear() for n in names}


def _recommendations(caches: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for name, s in caches.items():
        upper = name.upper()
        if s["bypassed"]:
            found.append({
                "cache": name, "setting": f"{ENV_PREFIX}DIR",
                "message": f"'{name}' is bypassed ({s['bypassed']}); fix the directory "
                           f"{s['directory']} or run 'freqtrade-opt cache clear {name}'",
            })
            continue
        stores, evictions = s["stores"], s["evictions"]
        near_full = s["limit_mb"] and s["size_mb"] >= 0.9 * s["limit_mb"]
        if (evictions and stores >= 5 and evictions >= 0.1 * stores) or near_full:
            suggested = _round_up(s["limit_mb"] * 2)
            why = (f"{evictions} evictions for {stores} stores" if evictions
                   else f"{s['size_mb']:.0f} of {s['limit_mb']:.0f} MB used")
            found.append({
                "cache": name, "setting": f"{ENV_PREFIX}{upper}_SIZE_MB", "suggested": suggested,
                "message": f"raise the '{name}' size limit to {suggested} MB ({why})",
            })
        if stores >= 10 and s["hits"] < 0.25 * stores:
            suggested = max(60, int(s["ttl_seconds"] // 2))
            found.append({
                "cache": name, "setting": f"{ENV_PREFIX}{upper}_TTL_SECONDS",
                "suggested": suggested,
                "message": f"most '{name}' entries are never read again ({s['hits']} hits for "
                           f"{stores} stores): lower its TTL to {suggested} s to free space "
                           "sooner",
            })
        if s["not_cacheable"] >= 10 and s["not_cacheable"] > stores:
            found.append({
                "cache": name, "setting": None,
                "message": f"{s['not_cacheable']} '{name}' results could not be stored exactly "
                           "(unsupported types or too large); see debug logs",
            })
    return found


def _round_up(value: float) -> int:
    return int(-(-value // 64) * 64)


def get_cache_status() -> dict[str, Any]:
    """Per-cache figures, an aggregate, and recommendations.

    ``{"caches": {name: {entries, size_mb, limit_mb, ttl_seconds, hits, misses, hit_rate,
    stores, evictions, expired, not_cacheable, errors, bypassed, directory, enabled}},
    "aggregate": {total_memory_mb, average_hit_rate, entries, hits, misses},
    "recommendations": [{cache, setting, suggested?, message}]}``
    """
    caches = {name: get_cache(name).status() for name in CACHE_NAMES}
    rates = [s["hit_rate"] for s in caches.values() if s["hit_rate"] is not None]
    aggregate = {
        "total_memory_mb": round(sum(s["size_mb"] for s in caches.values()), 3),
        "average_hit_rate": round(sum(rates) / len(rates), 4) if rates else None,
        "entries": sum(s["entries"] for s in caches.values()),
        "hits": sum(s["hits"] for s in caches.values()),
        "misses": sum(s["misses"] for s in caches.values()),
    }
    return {"caches": caches, "aggregate": aggregate, "recommendations": _recommendations(caches)}


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
