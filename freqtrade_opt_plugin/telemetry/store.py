"""The persistent telemetry store: one SQLite file in the plugin's state directory.

Why SQLite and not diskcache: the store is written by many processes at once (hyperopt workers)
and its counters must add up exactly, which one ``INSERT .. ON CONFLICT DO UPDATE SET calls =
calls + excluded.calls`` per flush transaction gives for free; and it holds only numbers and text,
so nothing in it is ever unpickled (a planted file cannot run code).

The schema, its format and the records are in `telemetry.records`.

Failure policy: a corrupt, unreadable or unwritable store is reported once per process with a
warning naming the path; the store then stays out of the way (methods return empty results,
`write` returns False) and telemetry continues in memory. A store locked by other writers for
longer than the busy timeout is a transient failure: `write` returns False and the caller keeps
its records for the next flush. No method raises.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from freqtrade_opt_plugin.paths import UnsafeDirectoryError, ensure_private_dir
from freqtrade_opt_plugin.telemetry.records import (
    _COUNTERS,
    _SCHEMA,
    _UPGRADE_FROM_1,
    EARLIER_RUNS,
    FILENAME,
    SCHEMA_VERSION,
    PathDelta,
    RunData,
    Totals,
    _pack,
    _totals_of,
    _unpack,
)


logger = logging.getLogger(__name__)

__all__ = [
    "EARLIER_RUNS", "FILENAME", "SCHEMA_VERSION", "PathDelta", "RunData", "TelemetryStore",
    "Totals",
]


class _Unavailable(Exception):
    """Internal: the store cannot be used in this process (already reported)."""


class TelemetryStore:
    """Thread-safe, fork-aware access to one telemetry file. See the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        max_samples: int = 2000,
        run_samples: int = 200,
        max_runs: int = 50,
        max_store_mb: int = 32,
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self.max_samples = max_samples
        self.run_samples = run_samples
        self.max_runs = max_runs
        self.max_store_mb = max_store_mb
        self.busy_timeout = busy_timeout
        self.problem: str | None = None  # set once the store is unusable in this process
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        self._warned_transient = False

    # -- connection ---------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self.problem is None

    def exists(self) -> bool:
        return self.path.is_file()

    def _fail(self, exc: BaseException, action: str) -> None:
        """A permanent problem: warn once (naming the path), then stay out of the way."""
        if self.problem is None:
            hint = ""
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.OperationalError
            ):
                hint = " Run `freqtrade-opt reset` to start a new store."
            self.problem = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "freqtrade-opt: telemetry store %s unusable (%s while %s); telemetry continues "
                "in memory only for this process.%s",
                self.path, self.problem, action, hint,
            )
        self._drop_connection()

    def _transient(self, exc: BaseException, action: str) -> None:
        if not self._warned_transient:
            self._warned_transient = True
            logger.warning(
                "freqtrade-opt: telemetry store %s busy (%s while %s); records are kept in memory "
                "and written at the next flush.",
                self.path, exc, action,
            )

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._conn_pid == os.getpid():
            try:
                conn.close()
            except sqlite3.Error:
                pass
        elif conn is not None:
            _INHERITED.append(conn)  # never close a connection inherited through fork

    def after_fork(self) -> None:
        """In a forked child: forget the parent's connection and lock (never use or close them)."""
        self._lock = threading.RLock()
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._conn = None
        self._warned_transient = False

    def _connection(self, create: bool) -> sqlite3.Connection | None:
        if self.problem is not None:
            raise _Unavailable(self.problem)
        if self._conn is not None and self._conn_pid == os.getpid():
            return self._conn
        if self._conn is not None:  # inherited through fork
            _INHERITED.append(self._conn)
            self._conn = None
        if not self.path.exists():
            if not create:
                return None
            ensure_private_dir(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        else:
            ensure_private_dir(self.path.parent)  # it may have been opened up since it was made
        if not self.path.is_file():
            raise IsADirectoryError(f"{self.path} is not a file")
        conn = sqlite3.connect(
            str(self.path), timeout=self.busy_timeout, isolation_level=None,
            check_same_thread=False,
        )
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"schema version {version} is newer than this plugin's {SCHEMA_VERSION}"
                )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA journal_size_limit = 4194304")  # WAL truncated to 4 MiB
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {self.max_store_mb * 2**20 // page_size}")
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    version = conn.execute("PRAGMA user_version").fetchone()[0]  # under the lock
                    if version == 1:
                        for statement in _UPGRADE_FROM_1:
                            conn.execute(statement)
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except BaseException:
            conn.close()
            raise
        self._conn, self._conn_pid = conn, os.getpid()
        return conn

    def _run(self, action: str, fn, default, *, create: bool = False):
        """Run fn(conn) under the lock with the failure policy; `default` when unusable.

        "Database is locked" is retried until ``busy_timeout`` has passed (SQLite's own busy
        handler does not cover every case, e.g. several processes creating the file at once).
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        with self._lock:
            while True:
                try:
                    conn = self._connection(create)
                    if conn is None:
                        return default
                    return fn(conn)
                except _Unavailable:
                    return default
                except sqlite3.OperationalError as exc:
                    text = str(exc).lower()
                    if "locked" not in text and "busy" not in text:
                        self._fail(exc, action)
                        return default
                    if time.monotonic() + delay > deadline:
                        self._transient(exc, action)
                        return default
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
                except (sqlite3.Error, OSError, UnsafeDirectoryError, ValueError) as exc:
                    self._fail(exc, action)
                    return default

    # -- writing ------------------------------------------------------------------------------

    def write(
        self,
        run: str,
        deltas: Sequence[PathDelta],
        *,
        run_started: float | None = None,
        system: dict[str, Any] | None = None,
    ) -> bool:
        """Add `deltas` for `run` in one transaction. True when written (or nothing to write)."""
        if not deltas and system is None:
            return True

        def do(conn: sqlite3.Connection) -> bool:
            now = time.time()
            pid = os.getpid()
            conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO runs (run, started, pid) VALUES (?, ?, ?)",
                    (run, run_started or now, pid),
                )
                new_run = cursor.rowcount == 1
                calls = 0
                for d in deltas:
                    calls += d.calls
                    self._add_totals(conn, run, d, now)
                    for table, values in (
                        ("timings", d.timings), ("memory", d.peaks), ("cpu", d.cpu)
                    ):
                        if values:
                            conn.execute(
                                f"INSERT INTO {table} (name, path, run, ts, pid, n, data) "  # noqa: S608
                                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (d.name, d.path, run, now, pid, len(values),
                                 _pack(table, values)),
                            )
                            if table == "cpu":
                                self._prune_run(conn, d.name, d.path, run)
                            else:
                                self._prune(conn, table, d.name, d.path)
                if deltas:
                    conn.execute(
                        "INSERT INTO processes (run, pid, calls, first_seen, last_seen) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (run, pid) DO UPDATE SET "
                        "calls = calls + excluded.calls, last_seen = excluded.last_seen",
                        (run, pid, calls, now, now),
                    )
                if system is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('system', ?)",
                        (json.dumps({**system, "ts": now, "run": run}),),
                    )
                    conn.execute("UPDATE runs SET system = ? WHERE run = ?",
                                 (json.dumps(system), run))
                if new_run:
                    self._fold_old_runs(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return True

        return self._run("writing telemetry", do, False, create=True)

    @staticmethod
    def _add_totals(conn: sqlite3.Connection, run: str, d: PathDelta, now: float) -> None:
        columns = ", ".join(_COUNTERS)
        updates = ", ".join(f"{c} = {c} + excluded.{c}" for c in _COUNTERS)
        conn.execute(
            f"INSERT INTO totals (name, path, run, {columns}, mem_peak_max, first_seen, last_seen) "
            f"VALUES (?, ?, ?, {', '.join('?' * len(_COUNTERS))}, ?, ?, ?) "
            f"ON CONFLICT (name, path, run) DO UPDATE SET {updates}, "
            "mem_peak_max = max(mem_peak_max, excluded.mem_peak_max), "
            "last_seen = excluded.last_seen",
            (d.name, d.path, run, *(getattr(d, c) for c in _COUNTERS), d.mem_peak_max, now, now),
        )

    def _prune(self, conn: sqlite3.Connection, table: str, name: str, path: str) -> None:
        """Delete the rows of (name, path) older than its newest `max_samples` values."""
        kept = 0
        rows = conn.execute(
            f"SELECT id, n FROM {table} WHERE name = ? AND path = ? ORDER BY id DESC",  # noqa: S608
            (name, path),
        )
        for row_id, n in rows:
            if kept >= self.max_samples:
                conn.execute(
                    f"DELETE FROM {table} WHERE name = ? AND path = ? AND id <= ?",  # noqa: S608
                    (name, path, row_id),
                )
                return
            kept += max(0, int(n))

    def _prune_run(self, conn: sqlite3.Connection, name: str, path: str, run: str) -> None:
        """Delete the CPU rows of (name, path, run) older than its newest `run_samples` values."""
        kept = 0
        rows = conn.execute(
            "SELECT id, n FROM cpu WHERE name = ? AND path = ? AND run = ? ORDER BY id DESC",
            (name, path, run),
        )
        for row_id, n in rows:
            if kept >= self.run_samples:
                conn.execute("DELETE FROM cpu WHERE name = ? AND path = ? AND run = ? AND id <= ?",
                             (name, path, run, row_id))
                return
            kept += max(0, int(n))

    def _fold_old_runs(self, conn: sqlite3.Connection) -> None:
        old = [
            row[0]
            for row in conn.execute(
                "SELECT run FROM runs WHERE run != ? ORDER BY started DESC LIMIT -1 OFFSET ?",
                (EARLIER_RUNS, self.max_runs),
            )
        ]
        if not old:
            return
        marks = ", ".join("?" * len(old))
        columns = ", ".join(_COUNTERS)
        sums = ", ".join(f"sum({c})" for c in _COUNTERS)
        updates = ", ".join(f"{c} = {c} + excluded.{c}" for c in _COUNTERS)
        conn.execute(
            f"INSERT INTO totals (name, path, run, {columns}, mem_peak_max, first_seen, last_seen) "
            f"SELECT name, path, ?, {sums}, max(mem_peak_max), min(first_seen), max(last_seen) "
            f"FROM totals WHERE run IN ({marks}) GROUP BY name, path "
            f"ON CONFLICT (name, path, run) DO UPDATE SET {updates}, "
            "mem_peak_max = max(mem_peak_max, excluded.mem_peak_max), "
            "first_seen = min(first_seen, excluded.first_seen), "
            "last_seen = max(last_seen, excluded.last_seen)",
            (EARLIER_RUNS, *old),
        )
        conn.execute(f"DELETE FROM totals WHERE run IN ({marks})", old)  # noqa: S608
        conn.execute(f"DELETE FROM processes WHERE run IN ({marks})", old)  # noqa: S608
        conn.execute(f"DELETE FROM cpu WHERE run IN ({marks})", old)  # noqa: S608
        conn.execute(f"DELETE FROM runs WHERE run IN ({marks})", old)  # noqa: S608

    # -- reading ------------------------------------------------------------------------------

    def totals(self, run: str | None = None) -> list[Totals]:
        """Counters per (name, path): summed over all runs, or of one run."""
        sums = ", ".join(f"sum({c})" for c in _COUNTERS)
        where, params = ("WHERE run = ?", (run,)) if run is not None else ("", ())

        def do(conn: sqlite3.Connection) -> list[Totals]:
            rows = conn.execute(
                f"SELECT name, path, {sums}, max(mem_peak_max) FROM totals {where} "  # noqa: S608
                "GROUP BY name, path ORDER BY name, path",
                params,
            ).fetchall()
            return [_totals_of(row) for row in rows]

        return self._run("reading totals", do, [])

    def timings(
        self,
        name: str,
        path: str,
        *,
        limit: int,
        run: str | None = None,
        exclude_run: str | None = None,
    ) -> list[float]:
        """Newest `limit` clean call durations (newest first), optionally of one run or not."""
        return self._samples("timings", name, path, limit, run, exclude_run)

    def peaks(self, name: str, path: str, *, limit: int, run: str | None = None) -> list[int]:
        """Newest `limit` peak traced allocations of memory-sampled calls (newest first)."""
        return [int(v) for v in self._samples("memory", name, path, limit, run, None)]

    def _samples(self, table, name, path, limit, run, exclude_run) -> list:
        where = "name = ? AND path = ?"
        params: list[Any] = [name, path]
        if run is not None:
            where += " AND run = ?"
            params.append(run)
        if exclude_run is not None:
            where += " AND run != ?"
            params.append(exclude_run)

        def do(conn: sqlite3.Connection) -> list:
            out: list = []
            if limit <= 0:
                return out
            rows = conn.execute(
                f"SELECT n, data FROM {table} WHERE {where} ORDER BY id DESC",  # noqa: S608
                params,
            )
            for n, data in rows:
                values = _unpack(table, n, data)
                out.extend(reversed(values[-(limit - len(out)):]))
                if len(out) >= limit:
                    break
            return out

        return self._run(f"reading {table}", do, [])

    def cpu(
        self, name: str, path: str, *, limit: int, run: str | None = None,
    ) -> list[float]:
        """Newest `limit` thread CPU times of clean calls (newest first), optionally of one run."""
        return self._samples("cpu", name, path, limit, run, None)

    def history(self, name: str, *, runs: int) -> list[RunData]:
        """The newest `runs` runs in which `name` was called, oldest first (see `RunData`)."""
        sums = ", ".join(f"sum({c})" for c in _COUNTERS)

        def do(conn: sqlite3.Connection) -> list[RunData]:
            found = conn.execute(
                "SELECT r.run, r.started, r.system FROM runs r WHERE r.run IN "
                "(SELECT DISTINCT run FROM totals WHERE name = ?) "
                "ORDER BY r.started DESC, r.run DESC LIMIT ?",
                (name, runs),
            ).fetchall()
            out = []
            for run, started, system in reversed(found):
                totals = {
                    row[1]: _totals_of(row)
                    for row in conn.execute(
                        f"SELECT name, path, {sums}, max(mem_peak_max) FROM totals "  # noqa: S608
                        "WHERE name = ? AND run = ? GROUP BY path",
                        (name, run),
                    )
                }
                samples: dict[str, dict[str, list[float]]] = {"cpu": {}, "timings": {}}
                for table, per_path in samples.items():
                    for path, n, data in conn.execute(
                        f"SELECT path, n, data FROM {table} "  # noqa: S608
                        "WHERE name = ? AND run = ? ORDER BY id",
                        (name, run),
                    ):
                        per_path.setdefault(path, []).extend(_unpack(table, n, data))
                try:
                    info = json.loads(system) if system else None
                except ValueError:
                    info = None
                out.append(RunData(run, started, info if isinstance(info, dict) else None,
                                   totals, samples["cpu"], samples["timings"]))
            return out

        return self._run("reading the run history", do, [])

    def run_systems(self) -> dict[str, dict[str, Any]]:
        """run -> its recorded system status (level, active optimizations)."""

        def do(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            out = {}
            rows = conn.execute("SELECT run, system FROM runs WHERE system IS NOT NULL")
            for run, system in rows:
                try:
                    value = json.loads(system)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    out[run] = value
            return out

        return self._run("reading runs", do, {})

    def latest_run(self, name: str, path: str) -> str | None:
        """The run of the newest stored timing of (name, path)."""

        def do(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT run FROM timings WHERE name = ? AND path = ? ORDER BY id DESC LIMIT 1",
                (name, path),
            ).fetchone()
            return row[0] if row else None

        return self._run("reading timings", do, None)

    def runs(self) -> list[dict[str, Any]]:
        """Runs, newest first, with their process count and calls."""

        def do(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT r.run, r.started, r.pid, count(p.pid), coalesce(sum(p.calls), 0) "
                "FROM runs r LEFT JOIN processes p ON p.run = r.run "
                "GROUP BY r.run ORDER BY r.started DESC"
            ).fetchall()
            return [
                {"run": r[0], "started": r[1], "pid": r[2], "processes": r[3], "calls": r[4]}
                for r in rows
            ]

        return self._run("reading runs", do, [])

    def names(self) -> list[str]:
        def do(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT name FROM totals UNION SELECT name FROM timings "
                "UNION SELECT name FROM disabled ORDER BY 1"
            )
            return [row[0] for row in rows]

        return self._run("reading names", do, [])

    def meta(self, key: str) -> Any:
        def do(conn: sqlite3.Connection) -> Any:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            try:
                return json.loads(row[0])
            except ValueError:
                return None

        return self._run("reading meta", do, None)

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except OSError:
                pass
        return total

    # -- disabled state -----------------------------------------------------------------------

    def disable(self, name: str, reason: str) -> bool:
        """Persist an auto-disable (the first reason is kept until `reset`)."""

        def do(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "INSERT OR IGNORE INTO disabled (name, reason, ts, pid) VALUES (?, ?, ?, ?)",
                (name, reason, time.time(), os.getpid()),
            )
            return True

        return self._run("writing the disabled state", do, False, create=True)

    def disabled(self) -> dict[str, str]:
        def do(conn: sqlite3.Connection) -> dict[str, str]:
            return dict(conn.execute("SELECT name, reason FROM disabled ORDER BY name"))

        return self._run("reading the disabled state", do, {})

    def reset(self, name: str | None = None) -> list[str] | None:
        """Forget the disabled state and all telemetry of `name` (or everything).

        Returns the names that had something stored, or None when the store is unusable.
        A corrupt store is moved aside (``<file>.corrupt``) by ``reset()`` without a name.
        """
        if name is None and self.problem is not None and self.path.is_file():
            return self._recreate()

        def do(conn: sqlite3.Connection) -> list[str]:
            where, params = ("WHERE name = ?", (name,)) if name is not None else ("", ())
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = sorted(
                    {
                        row[0]
                        for table in ("totals", "timings", "memory", "cpu", "disabled")
                        for row in conn.execute(
                            f"SELECT DISTINCT name FROM {table} {where}", params  # noqa: S608
                        )
                    }
                )
                for table in ("totals", "timings", "memory", "cpu", "disabled"):
                    conn.execute(f"DELETE FROM {table} {where}", params)  # noqa: S608
                if name is None:
                    for table in ("runs", "processes", "meta"):
                        conn.execute(f"DELETE FROM {table}")  # noqa: S608
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return found

        result = self._run("resetting", do, None)
        if result is None and self.problem is None and not self.path.exists():
            return []
        if result is None and name is None and self.problem is not None and self.path.is_file():
            return self._recreate()  # found corrupt just now
        return result

    def _recreate(self) -> list[str]:
        with self._lock:
            self._drop_connection()
            aside = self.path.with_name(self.path.name + ".corrupt")
            try:
                os.replace(self.path, aside)
                for suffix in ("-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("freqtrade-opt: could not move %s aside: %s", self.path, exc)
                return []
            logger.warning("freqtrade-opt: corrupt telemetry store moved to %s", aside)
            self.problem = None
            return []


_INHERITED: list[sqlite3.Connection] = []  # connections of a parent process: kept, never closed
