"""A corrupt, unwritable, unsafe or locked store: one warning, telemetry goes on, nothing raises."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat

import pytest

from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings, generate_performance_report
from freqtrade_opt_plugin.telemetry_store import FILENAME


def make(path, run="run-1", **settings) -> Monitor:
    return Monitor(MonitorSettings(**settings), store_path=path, run_id=run)


def warnings_about(caplog, path) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and str(path) in r.getMessage()]


def record_some(m: Monitor, n: int = 20) -> None:
    for i in range(n):
        m.record("f", "optimized", 0.001 + i * 1e-5)
        m.record("f", "original", 0.002 + i * 1e-5)


def test_corrupt_store_warns_once_and_keeps_counting(tmp_path, caplog):
    store_file = tmp_path / FILENAME
    store_file.write_bytes(b"this is not a database, just garbage " * 100)
    m = make(store_file, flush_every=5)
    with caplog.at_level(logging.WARNING):
        record_some(m, 50)  # many flush attempts
        m.flush()
        assert m.disabled() == {}
        m.disable("f", "gate")
    found = warnings_about(caplog, store_file)
    assert len(found) == 1, found
    assert "unusable" in found[0] and "freqtrade-opt reset" in found[0]
    assert m.stats("f")["optimized"].calls == 50
    assert m.is_disabled("f") == "gate"  # the process still honours it
    report = generate_performance_report(monitor=m)
    assert report["functions"][0]["optimized"]["calls"] == 50  # from memory
    assert report["system"]["store"]["problem"]
    assert any("unusable" in line for line in report["recommendations"])
    assert store_file.read_bytes().startswith(b"this is not a database")  # not touched


def test_reset_moves_a_corrupt_store_aside(tmp_path):
    store_file = tmp_path / FILENAME
    store_file.write_bytes(b"garbage" * 1000)
    m = make(store_file)
    assert m.reset_persistent("f") is None  # cannot reset one name in an unreadable store
    assert m.reset_persistent() == []
    assert (tmp_path / (FILENAME + ".corrupt")).is_file()
    record_some(m, 5)
    assert m.flush()
    assert make(store_file, run="r2").store().totals()[0].calls == 5


def test_reset_of_a_corrupt_store_in_a_fresh_process(tmp_path):
    store_file = tmp_path / FILENAME
    store_file.write_bytes(b"garbage" * 1000)
    assert make(store_file).reset_persistent() == []  # the first thing this process does
    assert (tmp_path / (FILENAME + ".corrupt")).is_file() and not store_file.exists()


def test_store_in_an_unwritable_place(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be")
    store_file = blocker / "freqtrade_opt" / FILENAME
    m = make(store_file)
    with caplog.at_level(logging.WARNING):
        record_some(m)
        assert m.flush()  # nothing to retry: the records stay in memory
        record_some(m)
        m.flush()
        m.disable("f", "reason")
    assert len(warnings_about(caplog, store_file)) == 1
    assert m.stats("f")["original"].calls == 40


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_store_in_a_read_only_directory(tmp_path, caplog):
    state = tmp_path / "state"
    state.mkdir(mode=0o500)
    m = make(state / FILENAME)
    with caplog.at_level(logging.WARNING):
        record_some(m)
        m.flush()
    assert len(warnings_about(caplog, state / FILENAME)) == 1


def test_read_only_store_file(tmp_path, caplog):
    store_file = tmp_path / FILENAME
    writer = make(store_file)
    record_some(writer)
    writer.flush()
    writer.store()._drop_connection()
    reader = make(store_file, run="r2")
    reader.store()._connection(create=False).execute("PRAGMA query_only = 1")
    with caplog.at_level(logging.WARNING):
        record_some(reader)
        reader.flush()
    assert len(warnings_about(caplog, store_file)) == 1
    assert reader.stats("f")["optimized"].calls == 20


def test_group_writable_state_directory_is_refused(tmp_path, caplog):
    state = tmp_path / "shared"
    state.mkdir()
    os.chmod(state, 0o777)
    m = make(state / FILENAME)
    with caplog.at_level(logging.WARNING):
        record_some(m)
        m.flush()
    found = warnings_about(caplog, state)
    assert len(found) == 1 and "writable by group or others" in found[0]
    assert not (state / FILENAME).exists()
    assert stat.S_IMODE(state.stat().st_mode) == 0o777


def test_locked_store_keeps_records_for_the_next_flush(tmp_path, caplog):
    store_file = tmp_path / FILENAME
    m = make(store_file, busy_timeout=0.2)
    record_some(m, 10)
    assert m.flush()
    blocker = sqlite3.connect(store_file, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holding the lock
    try:
        record_some(m, 10)
        with caplog.at_level(logging.WARNING):
            assert not m.flush()
            assert not m.flush()
        found = warnings_about(caplog, store_file)
        assert len(found) == 1 and "busy" in found[0]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert m.flush()
    totals = {t.path: t.calls for t in m.store().totals()}
    assert totals == {"optimized": 20, "original": 20}  # nothing lost, nothing doubled


def test_malformed_sample_rows_are_ignored(tmp_path):
    store_file = tmp_path / FILENAME
    m = make(store_file)
    record_some(m, 10)
    m.flush()
    with sqlite3.connect(store_file) as conn:
        conn.execute("INSERT INTO timings (name, path, run, ts, pid, n, data) "
                     "VALUES ('f', 'optimized', 'x', 0, 0, 5, X'00')")
        conn.execute("INSERT INTO timings (name, path, run, ts, pid, n, data) "
                     "VALUES ('f', 'optimized', 'x', 0, 0, 1, 'text, not numbers')")
    assert len(m.store().timings("f", "optimized", limit=100)) == 10


def test_newer_schema_is_not_touched(tmp_path, caplog):
    store_file = tmp_path / FILENAME
    with sqlite3.connect(store_file) as conn:
        conn.execute("PRAGMA user_version = 99")
    m = make(store_file)
    with caplog.at_level(logging.WARNING):
        record_some(m)
        m.flush()
    found = warnings_about(caplog, store_file)
    assert len(found) == 1 and "newer" in found[0]
