"""Files of a cache directory besides diskcache's own: the statistics every process adds to
(``stats.sqlite3``), and removing what diskcache and this package created (nothing else)."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path


logger = logging.getLogger(__name__)

STATS_FILE = "stats.sqlite3"
_KNOWN_FILES = re.compile(r"cache\.db(-wal|-shm|-journal)?|stats\.sqlite3(-wal|-shm|-journal)?")


def add_counts(directory: Path, timeout: float, pending: Mapping[str, int],
               refusals: Mapping[str, int] | None = None) -> None:
    """Add `pending` to the counters in `directory`, and `refusals` (reason -> results not
    stored) to the refusal counts (raises sqlite3.Error / OSError)."""
    with _StatsConnection(directory, timeout) as con:
        con.executemany(
            "INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) "
            "DO UPDATE SET value = value + excluded.value",
            list(pending.items()),
        )
        con.executemany(
            "INSERT INTO refusals(reason, count) VALUES (?, ?) ON CONFLICT(reason) "
            "DO UPDATE SET count = count + excluded.count",
            list((refusals or {}).items()),
        )


def read_refusals(directory: Path, timeout: float) -> dict[str, int]:
    """Reason -> results not stored, as stored in `directory` (empty when absent/unreadable)."""
    found: dict[str, int] = {}
    if not (directory / STATS_FILE).is_file():
        return found
    try:
        with _StatsConnection(directory, timeout) as con:
            for reason, count in con.execute("SELECT reason, count FROM refusals"):
                found[str(reason)] = int(count)
    except (sqlite3.Error, OSError) as exc:
        logger.debug("cache stats in %s unreadable: %s", directory, exc)
    return found


def read_counts(directory: Path, timeout: float, names: Iterable[str]) -> dict[str, int]:
    """The counters `names` stored in `directory` (zero when absent or unreadable)."""
    totals = dict.fromkeys(names, 0)
    if not (directory / STATS_FILE).is_file():
        return totals
    try:
        with _StatsConnection(directory, timeout) as con:
            for name, value in con.execute("SELECT name, value FROM counters"):
                if name in totals and isinstance(value, int):
                    totals[name] += value
    except (sqlite3.Error, OSError) as exc:
        logger.debug("cache stats in %s unreadable: %s", directory, exc)
    return totals


def remove_stats(directory: Path) -> None:
    try:
        for suffix in ("", "-wal", "-shm"):
            (directory / (STATS_FILE + suffix)).unlink(missing_ok=True)
    except OSError:
        pass


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


def _stats_connection(directory: Path, timeout: float) -> _StatsConnection:
    return _StatsConnection(directory, timeout)


def remove_cache_files(directory: Path) -> int:
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
