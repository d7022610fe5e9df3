"""A real ``redis-server`` for the tests: 127.0.0.1, a free port, no persistence, stopped at the
end.

Missing binary: the tests are skipped with the reason, except in CI (``CI=true``), where they fail
(``.ci/run`` installs the Debian package).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


class RedisServer:
    """One ``redis-server`` process; `client()` is a redis-py client of its default user."""

    def __init__(self, directory: Path, *extra: str, tls_port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed (Debian: apt-get install redis-server)"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message + "; CI must provide it (.ci/run installs it)")
            pytest.skip(message)
        directory.mkdir(parents=True, exist_ok=True)
        self.port = tls_port or _free_port()
        self.tls = tls_port is not None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = directory / f"redis-{self.port}.log"
        self.process = subprocess.Popen(
            [binary, *(() if self.tls else ("--port", str(self.port))), "--bind", "127.0.0.1",
             "--save", "",
             "--appendonly", "no", "--dir", str(directory), "--logfile", str(self.log),
             *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def client(self, **kwargs):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kwargs)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log.read_text(errors='replace')}")
            try:
                if self.tls:  # a TLS port: ready once it accepts connections
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                if self.client().ping():
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within 20 s")

    def reset(self) -> None:
        """Empty it and restore the settings tests change (memory bound, ACL users)."""
        client = self.client()
        client.flushall()
        client.config_set("maxmemory", 0)
        client.config_set("maxmemory-policy", "noeviction")
        for user in client.acl_users():
            name = user.decode() if isinstance(user, bytes) else user
            if name != "default":
                client.acl_deluser(name)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
