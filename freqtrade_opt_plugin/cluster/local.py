"""A real Dask cluster on this machine: ``dask scheduler`` and ``dask worker`` subprocesses.

For the tests and ``freqtrade-opt bench --hyperopt --dask``: the same commands a user types (see
README "Many machines"), on 127.0.0.1 with free ports, each worker in its own working directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _dask_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]]


@dataclass
class Process:
    name: str
    proc: subprocess.Popen
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class LocalCluster:
    """A scheduler and workers as subprocesses under `root` (stop() ends them all)."""

    root: Path
    env: dict[str, str]
    scheduler: Process | None = None
    address: str = ""
    workers: dict[str, Process] = field(default_factory=dict)

    def _spawn(self, name: str, command: list[str], cwd: Path,
               env: Mapping[str, str] | None = None) -> Process:
        cwd.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        with log.open("w") as handle:
            proc = subprocess.Popen(command, cwd=cwd, env={**self.env, **(env or {})},
                                    stdin=subprocess.DEVNULL, stdout=handle,
                                    stderr=subprocess.STDOUT)
        return Process(name, proc, log)

    def start_scheduler(self, timeout: float = 60) -> str:
        info = self.root / "scheduler.json"
        info.unlink(missing_ok=True)
        self.scheduler = self._spawn("scheduler", _dask_command(
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--scheduler-file", str(info)), self.root / "scheduler")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.scheduler.proc.poll() is not None:
                raise RuntimeError(f"dask scheduler exited:\n{self.scheduler.tail()}")
            try:
                self.address = json.loads(info.read_text())["address"]
                return self.address
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        raise RuntimeError(f"dask scheduler did not start in {timeout} s:\n"
                           f"{self.scheduler.tail()}")

    def start_worker(self, name: str, env: Mapping[str, str] | None = None,
                     nanny: bool = False) -> Process:
        """``dask worker <scheduler> --nthreads 1`` in its own directory ``root/<name>``."""
        cwd = self.root / name
        worker = self._spawn(name, _dask_command(
            "worker", self.address, "--nthreads", "1", "--name", name, "--no-dashboard",
            "--nanny" if nanny else "--no-nanny", "--local-directory", str(cwd / "local"),
            "--host", "127.0.0.1"), cwd, env)
        self.workers[name] = worker
        return worker

    def client(self, timeout: float = 30) -> Any:
        from distributed import Client

        return Client(self.address, timeout=timeout, set_as_default=False)

    def wait_for_workers(self, n: int, timeout: float = 90) -> None:
        with self.client() as client:
            deadline = time.monotonic() + timeout
            while len(client.scheduler_info(n_workers=-1)["workers"]) < n:
                dead = [w for w in self.workers.values() if w.proc.poll() is not None]
                if dead or time.monotonic() > deadline:
                    logs = "\n".join(f"--- {w.name}\n{w.tail()}" for w in self.workers.values())
                    raise RuntimeError(f"{n} dask workers did not come up:\n{logs}")
                time.sleep(0.2)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        if self.scheduler is not None:
            self.scheduler.stop()


def start_local_cluster(root: Path, n_workers: int, env: Mapping[str, str] | None = None,
                        worker_env: Mapping[str, Mapping[str, str]] | None = None,
                        nanny: bool = False) -> LocalCluster:
    """A scheduler plus `n_workers` single-thread workers (w1, w2, ...), ready to use.

    With `nanny`, each worker process is watched by a nanny that restarts it if it dies.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(root, dict(os.environ if env is None else env))
    try:
        cluster.start_scheduler()
        for i in range(1, n_workers + 1):
            name = f"w{i}"
            cluster.start_worker(name, (worker_env or {}).get(name), nanny=nanny)
        cluster.wait_for_workers(n_workers)
    except BaseException:
        cluster.stop()
        raise
    return cluster
