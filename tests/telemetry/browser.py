"""Open a page in headless Chromium over the DevTools protocol: console errors, a JavaScript
value, a full-page screenshot. Uses the Debian ``chromium`` and the ``websockets`` client."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageResult:
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    value: Any = None  # the evaluated expression
    screenshot: bytes = b""


class _Session:
    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while time.monotonic() < deadline:
            event = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(event)
            if event.get("method") == method:
                return event
        raise TimeoutError(method)


def open_page(url: str, expression: str, *, width: int = 1280, settle: float = 1.0) -> PageResult:
    """Load `url`, wait for the load event (+ `settle` s), evaluate `expression`, screenshot."""
    from websockets.sync.client import connect

    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium")
    profile = tempfile.mkdtemp(prefix="ftopt-chromium-")
    proc = subprocess.Popen(
        [binary, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         f"--window-size={width},1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=2**28) as ws:
            s = _Session(ws)
            target = s.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = s.send("Target.attachToTarget",
                             {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
                s.send(domain, session=session)
            s.send("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
                   session=session)
            s.send("Page.navigate", {"url": url}, session=session)
            s.wait_for("Page.loadEventFired")
            time.sleep(settle)
            result = PageResult()
            value = s.send("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True}, session=session)
            result.value = value.get("result", {}).get("value")
            height = s.send("Runtime.evaluate", {
                "expression": "document.documentElement.scrollHeight", "returnByValue": True,
            }, session=session)["result"]["value"]
            s.send("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": int(height), "deviceScaleFactor": 1,
                    "mobile": False}, session=session)
            time.sleep(0.5)
            shot = s.send("Page.captureScreenshot", {"format": "png"}, session=session)
            result.screenshot = base64.b64decode(shot["data"])
            for event in s.events:
                method, params = event.get("method"), event.get("params", {})
                if method == "Runtime.exceptionThrown":
                    result.errors.append(json.dumps(params.get("exceptionDetails"))[:500])
                elif method == "Runtime.consoleAPICalled" and params.get("type") in (
                    "error", "assert"
                ):
                    result.errors.append(json.dumps(params.get("args"))[:500])
                elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                    result.errors.append(params["entry"].get("text", "")[:500])
            return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def artifact_dir() -> Path:
    """Where tests leave files for people to look at (CI uploads ``.ci-artifacts``)."""
    root = Path(os.environ.get("FREQTRADE_OPT_ARTIFACTS",
                               Path(__file__).resolve().parents[2] / ".ci-artifacts"))
    root.mkdir(parents=True, exist_ok=True)
    return root
