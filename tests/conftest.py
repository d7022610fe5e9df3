"""Fixtures shared by several test folders: real, offline Freqtrade runs.

One small workspace (3 pairs x 6 days of 5m candles, SampleStrategy, `rel_workspace`) and one
stock backtest of it (`stock_run`) are shared by the whole session (reliability, commands). Every
plugin run gets its own private state directory, so its telemetry and auto-disable state can be
read back. Independent runs are started two at a time (`run_parallel`): they are separate
processes, and the machine has two cores. `no_network_env` is the environment that makes any
HTTP(S) attempt fail; `scrubbed_environment` drops the plugin's variables from this process (a
folder opts in with an autouse fixture, see tests/reliability/conftest.py).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from freqtrade_opt_plugin.offline.compare import compare_backtests
from freqtrade_opt_plugin.offline.workspace import (
    BacktestRun,
    Workspace,
    create_workspace,
    run_backtest,
    subprocess_env,
)


REL_PAIRS = ("BTC/USDT", "ETH/USDT", "XRP/USDT")
REL_DAYS = 6
PLUGIN_ROOT = str(Path(__file__).resolve().parents[1])

#: Proxies pointing at a closed local port: any HTTP(S) attempt through requests/urllib fails.
UNREACHABLE_PROXIES = {
    name: "http://127.0.0.1:9"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")
}
NO_PROXY_OVERRIDES = {"NO_PROXY": "", "no_proxy": ""}
_OWN_PREFIXES = ("FREQTRADE_OPT_", "_FREQTRADE_OPT_", "FREQTRADE_OFFLINE_", "FTOPT_")


@pytest.fixture(scope="session")
def scrubbed_environment():
    """Runs inherit this process's environment: drop every plugin variable (also ones exported
    by in-process tests, e.g. a run id or a config section) so only what a test passes applies."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(_OWN_PREFIXES)}
    for key in saved:
        del os.environ[key]
    yield
    for key in [k for k in os.environ if k.startswith(_OWN_PREFIXES)]:
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(scope="session")
def no_network_env() -> dict[str, str]:
    """Proxies at a closed local port, no proxy exceptions: any HTTP(S) attempt fails."""
    return {**UNREACHABLE_PROXIES, **NO_PROXY_OVERRIDES}


@pytest.fixture(scope="session")
def rel_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("reliability-ws")
    return create_workspace(root, REL_PAIRS, days=REL_DAYS, seed=11)


def private_dir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(mode=0o700, parents=True)
    path.chmod(0o700)
    return path


def plugin_env(state_dir: Path | str, **overrides: str) -> dict[str, str]:
    """Environment of one run: its own state directory, no network, plus `overrides`."""
    return {"FREQTRADE_OPT_STATE_DIR": str(state_dir), **UNREACHABLE_PROXIES,
            **NO_PROXY_OVERRIDES, **overrides}


@pytest.fixture(scope="session")
def stock_run(rel_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> BacktestRun:
    """The reference: stock Freqtrade (the plugin's master switch off)."""
    state = private_dir(tmp_path_factory.mktemp("stock"), "state")
    return run_backtest(rel_workspace, plugin_env(state, FREQTRADE_OPT_AUTOLOAD="0"),
                        name="stock")


def assert_same_as_stock(run: BacktestRun, stock: BacktestRun) -> None:
    assert run.returncode == 0
    verdict = compare_backtests(stock, run)
    assert verdict.identical, verdict.summary()
    assert len(run.trades) == len(stock.trades) > 0


def log_of(run: BacktestRun) -> str:
    """The run's log with whitespace collapsed (Freqtrade's rich handler wraps long lines)."""
    return " ".join(run.log_path.read_text(errors="replace").split())


def opt_cli(args: list[str], env: Mapping[str, str], cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``freqtrade-opt ARGS`` in a fresh interpreter with `env` on top of this one's."""
    return subprocess.run(
        [sys.executable, "-m", "freqtrade_opt_plugin.cli", *args], env=subprocess_env(env),
        cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        check=False,
    )


def run_parallel(jobs: Mapping[str, Callable[[], Any]], workers: int = 2) -> dict[str, Any]:
    """Run independent jobs (each starting subprocesses) `workers` at a time; their results.
    A job's exception is re-raised here."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def dist_info(site: Path, name: str, entry_point: str) -> None:
    """Make `site` hold an importlib.metadata-visible distribution with a freqtrade_opt entry
    point (as tests/foundation/test_activation.py does)."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[freqtrade_opt]\n{entry_point}\n")


def mode_of(path: Path) -> str:
    return stat.filemode(path.stat().st_mode)


@pytest.fixture(scope="session")
def rel() -> Any:
    """The helpers above, for test modules (conftest modules are not importable by name here)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        private_dir=private_dir, plugin_env=plugin_env, assert_same_as_stock=assert_same_as_stock,
        log_of=log_of, opt_cli=opt_cli, run_parallel=run_parallel, dist_info=dist_info,
        mode_of=mode_of, plugin_root=PLUGIN_ROOT, pairs=REL_PAIRS,
    )
