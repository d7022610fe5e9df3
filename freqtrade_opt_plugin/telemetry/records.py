"""What the telemetry store holds: its schema and format, the records it reads and writes.

Format (``PRAGMA user_version`` = `SCHEMA_VERSION`, WAL journal):

``runs(run, started, pid, system)``
    One row per run; ``system`` is JSON text (level and active optimizations of the run). A run
    is a top-level process and every process it starts (hyperopt workers inherit the id through
    the environment). Only the newest ``max_runs`` keep their own totals;
    older runs are folded into the run ``""`` ("earlier runs").
``totals(name, path, run, calls, errors, fallbacks, total_seconds, timed_calls, timed_seconds,
mem_samples, mem_peak_sum, mem_peak_max, first_seen, last_seen, cpu_calls, cpu_seconds)``
    Additive counters per optimization, path ("optimized" / "original") and run; ``cpu_*``: the
    clean calls whose thread CPU time was measured, and its sum.
``timings(id, name, path, run, ts, pid, n, data)``
    Call durations in seconds (clean calls only: no errors, no memory-traced calls), one row per
    flush: ``data`` is ``n`` little-endian float64 values, oldest first (raw numbers, never
    pickled). Rows beyond the newest ``max_samples`` values per (name, path) are deleted. They give
    medians, p95 and the baselines.
``cpu(id, name, path, run, ts, pid, n, data)``
    Thread CPU time (``time.thread_time``) of clean calls, the same way; capped per run instead
    (the newest ``run_samples`` values per (name, path, run)), so that every stored run keeps the
    samples the regression analysis compares across runs.
``memory(id, name, path, run, ts, pid, n, data)``
    Peak traced allocation (bytes) of memory-sampled calls, the same way (little-endian int64).
``processes(run, pid, calls, first_seen, last_seen)``
    Which processes contributed to a run (the main process and its workers).
``disabled(name, reason, ts, pid)``
    Persistent auto-disables (error threshold, performance gate) until ``reset``.
``meta(key, value)``
    JSON text: ``system`` (level and active optimizations of the last flushing process).

Bounded: rows are capped as above and ``PRAGMA max_page_count`` caps the file (``max_store_mb``).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


SCHEMA_VERSION = 2  # 2: cpu table, totals.cpu_*, runs.system
FILENAME = "telemetry.sqlite3"
EARLIER_RUNS = ""  # the run id that older runs' totals are folded into

_COUNTERS = (
    "calls",
    "errors",
    "fallbacks",
    "total_seconds",
    "timed_calls",
    "timed_seconds",
    "mem_samples",
    "mem_peak_sum",
    "cpu_calls",
    "cpu_seconds",
)

#: Statements that bring a version-1 store to version 2 (columns SQLite cannot add in CREATE).
_UPGRADE_FROM_1 = (
    "ALTER TABLE runs ADD COLUMN system TEXT",
    "ALTER TABLE totals ADD COLUMN cpu_calls INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE totals ADD COLUMN cpu_seconds REAL NOT NULL DEFAULT 0",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY, started REAL NOT NULL, pid INTEGER NOT NULL, system TEXT
);
CREATE TABLE IF NOT EXISTS totals (
    name TEXT NOT NULL, path TEXT NOT NULL, run TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
    fallbacks INTEGER NOT NULL DEFAULT 0, total_seconds REAL NOT NULL DEFAULT 0,
    timed_calls INTEGER NOT NULL DEFAULT 0, timed_seconds REAL NOT NULL DEFAULT 0,
    mem_samples INTEGER NOT NULL DEFAULT 0, mem_peak_sum INTEGER NOT NULL DEFAULT 0,
    mem_peak_max INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    cpu_calls INTEGER NOT NULL DEFAULT 0, cpu_seconds REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (name, path, run)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, path TEXT NOT NULL,
    run TEXT NOT NULL, ts REAL NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS timings_by_function ON timings (name, path, id);
CREATE TABLE IF NOT EXISTS cpu (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, path TEXT NOT NULL,
    run TEXT NOT NULL, ts REAL NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS cpu_by_run ON cpu (name, path, run, id);
CREATE TABLE IF NOT EXISTS memory (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, path TEXT NOT NULL,
    run TEXT NOT NULL, ts REAL NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_by_function ON memory (name, path, id);
CREATE TABLE IF NOT EXISTS processes (
    run TEXT NOT NULL, pid INTEGER NOT NULL, calls INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, PRIMARY KEY (run, pid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS disabled (
    name TEXT PRIMARY KEY, reason TEXT NOT NULL, ts REAL NOT NULL, pid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Totals:
    """Counters of one (optimization, path), summed over the runs asked for."""

    name: str
    path: str
    calls: int = 0
    errors: int = 0
    fallbacks: int = 0
    total_seconds: float = 0.0
    timed_calls: int = 0
    timed_seconds: float = 0.0
    mem_samples: int = 0
    mem_peak_sum: int = 0
    mem_peak_max: int = 0
    cpu_calls: int = 0
    cpu_seconds: float = 0.0


@dataclass
class PathDelta(Totals):
    """What one flush adds for one (optimization, path): counters and new samples."""

    timings: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


@dataclass
class RunData:
    """One stored run of one optimization: when, at which level, and per path its totals and
    clean-call samples (thread CPU time; wall time where no CPU time was recorded)."""

    run: str
    started: float
    system: dict[str, Any] | None
    totals: dict[str, Totals]
    cpu: dict[str, list[float]]
    wall: dict[str, list[float]]



_TYPECODES = {"timings": "d", "memory": "q", "cpu": "d"}


def _totals_of(row: Sequence[Any]) -> Totals:
    """A `Totals` from (name, path, *sums of _COUNTERS, max(mem_peak_max))."""
    values = dict(zip(_COUNTERS, row[2 : 2 + len(_COUNTERS)], strict=True))
    return Totals(row[0], row[1], **values, mem_peak_max=row[2 + len(_COUNTERS)])


def _pack(table: str, values: Sequence[float]) -> bytes:
    """Values as little-endian float64 (timings) or int64 (memory) bytes."""
    packed = array(_TYPECODES[table], values)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def _unpack(table: str, n: Any, data: Any) -> list:
    """The values of a `_pack`ed blob; [] for a malformed one (a damaged or planted row)."""
    if not isinstance(data, bytes) or not isinstance(n, int) or len(data) != 8 * n:
        return []
    values = array(_TYPECODES[table])
    values.frombytes(data)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()
