"""What each worker needs for one run: the preprocessed data file and the plugin's settings.

The data is Freqtrade's own ``hyperopt_tickerdata.pkl`` (the joblib file), addressed by the
sha256 of its bytes, never by path. It travels as a Dask worker plugin: the scheduler keeps it for
the run and hands it to every worker once, including workers that join (or are restarted) later.
Each worker writes it into its own local directory and drops the bytes, so an epoch there loads
the same file the same way a local worker does (memory per worker: the same as a local one). The
plugin is removed at the end of the run, which deletes the file on every worker.

For the run the plugin also pauses Dask's statistical profiler on the worker: it samples the
epoch's thread every 10 ms and keeps a call tree per second (1000 of them), which made a Dask
worker ~40 MB larger than a loky worker and grow with every epoch. When the last run on the
worker ends, the profiler resumes and the epochs' ``gc.freeze`` (`epochs.release_memory`) is
undone: the worker is left as it was found.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin


logger = logging.getLogger(__name__)

PREFIX = "freqtrade-opt-run-"
# Settings handed to workers as they are here (the state dir and the cluster address stay theirs).
_NOT_SHIPPED = ("FREQTRADE_OPT_STATE_DIR", "FREQTRADE_OPT_DASK_", "_FREQTRADE_OPT_USER_DATA_DIR")

_files: dict[str, Path] = {}  # on a worker: digest -> local data file
_mismatch: dict[str, list[str]] = {}  # on a worker: digest -> how it differs from the main
_PROFILER = ("profile", "profile-cycle")  # Dask worker's periodic callbacks of its profiler
_active_runs: set[str] = set()  # on a worker: the runs set up on it
_paused_callbacks: dict[str, Any] = {}  # on a worker: the profiler's callbacks while paused


class WorkerMismatch(RuntimeError):
    """A worker is not fit for this run: other code than the main process's, or no data."""


def digest_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def plugin_settings_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The plugin's settings of this process (``FREQTRADE_OPT_*`` and the config section)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items()
            if k.startswith(("FREQTRADE_OPT_", "_FREQTRADE_OPT_CONFIG"))
            and not k.startswith(_NOT_SHIPPED)}


class RunContext(WorkerPlugin):
    """Sets a worker up for one run: writes the data file, applies the plugin's settings."""

    def __init__(self, payload: bytes, environ: Mapping[str, str],
                 versions: Mapping[str, Any] | None = None) -> None:
        self.digest = digest_of(payload)
        self.versions = dict(versions or {})  # the main process's, for workers that join later
        self.name = PREFIX + self.digest[:16]
        self.payload: bytes | None = payload
        self.environ = dict(environ)
        self.path: Path | None = None

    def setup(self, worker: Any) -> None:
        path = Path(worker.local_directory) / f"freqtrade-opt-data-{self.digest[:16]}.pkl"
        if self.payload is not None:
            if digest_of(self.payload) != self.digest:
                raise ValueError(f"data for run {self.name} arrived damaged")
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(self.payload)
            os.replace(tmp, path)
        self.payload = None  # the file holds it; the worker keeps no copy in memory
        self.path = path
        _files[self.digest] = path
        _run_started(worker, self.name)
        _apply_settings(self.environ)
        if self.versions:
            from freqtrade_opt_plugin.cluster import versions

            found = versions.local_versions(self.versions.get("strategy modules", {}))
            _mismatch[self.digest] = versions.differences(self.versions, found)
        logger.info("freqtrade-opt: run data %s ready at %s", self.digest[:16], path)

    def teardown(self, worker: Any) -> None:
        _files.pop(self.digest, None)
        _mismatch.pop(self.digest, None)
        _run_ended(worker, self.name)
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _run_started(worker: Any, run: str) -> None:
    """Take the profiler's callbacks off the worker while runs are set up on it (module doc).

    They leave ``worker.periodic_callbacks`` (so a worker that joins later does not start them
    after this set-up) and come back, started, when the last run ends. A worker whose config
    turns the profiler off has none: nothing to do.
    """
    callbacks = getattr(worker, "periodic_callbacks", None)
    if not _active_runs and callbacks is not None:
        for name in _PROFILER:
            callback = callbacks.pop(name, None)
            if callback is not None:
                callback.stop()
                _paused_callbacks[name] = callback
    _active_runs.add(run)


def _run_ended(worker: Any, run: str) -> None:
    """After the last run on the worker: the profiler back, the epochs' ``gc.freeze`` undone."""
    _active_runs.discard(run)
    if _active_runs:
        return
    callbacks = getattr(worker, "periodic_callbacks", None)
    for name, callback in list(_paused_callbacks.items()):
        del _paused_callbacks[name]
        if callbacks is not None:
            callbacks[name] = callback
            callback.start()
    from freqtrade_opt_plugin.cluster import epochs

    epochs.thaw()


def runs_active() -> bool:
    """Whether a run is set up on this worker (between its plugin's setup and teardown)."""
    return bool(_active_runs)


def profiler_running(dask_worker: Any) -> bool | None:
    """Whether the worker's statistical profiler runs (None: its config has none).

    For ``client.run(profiler_running)``, which passes the worker as `dask_worker`.
    """
    callbacks = [dask_worker.periodic_callbacks[n] for n in _PROFILER
                 if n in dask_worker.periodic_callbacks]
    if not callbacks:
        return False if _paused_callbacks else None
    return all(c.is_running() for c in callbacks)


def _apply_settings(environ: Mapping[str, str]) -> None:
    """Use the main process's plugin settings on this worker (as loky workers inherit them)."""
    if not environ:
        return
    os.environ.update(environ)
    from freqtrade_opt_plugin import activation
    from freqtrade_opt_plugin.settings import CONFIG_KEY, section_from_environment

    if activation.current() is not None:
        activation.learn_config({CONFIG_KEY: section_from_environment()})


def data_file(digest: str, worker: str = "this worker") -> Path:
    """On a worker: the local file holding the data `digest` (set up by `RunContext`).

    WorkerMismatch if this worker's versions differ from the main process's.
    """
    if _mismatch.get(digest):
        raise WorkerMismatch(f"worker {worker} joined the run with other code than this "
                             f"machine: {', '.join(_mismatch[digest])}")
    path = _files.get(digest)
    if path is None or not path.is_file():
        raise WorkerMismatch(f"worker {worker} has no data {digest[:16]} for the run (its run "
                             "plugin was not set up)")
    return path


def install(client: Any, payload: bytes, versions: Mapping[str, Any]) -> RunContext:
    """Send `payload` (and the settings) to every worker, present and future."""
    context = RunContext(payload, plugin_settings_environ(), versions)
    client.register_plugin(context)
    return context


def uninstall(client: Any, context: RunContext) -> None:
    """End of run: every worker deletes its copy; the scheduler forgets the bytes."""
    try:
        client.unregister_worker_plugin(context.name)
    except Exception as exc:  # the scheduler may be gone already
        logger.debug("freqtrade-opt: could not remove run plugin %s: %s", context.name, exc)
