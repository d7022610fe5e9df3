"""Fixtures for end-to-end runs of the real Freqtrade CLI, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from freqtrade_opt_plugin.offline.workspace import Workspace, create_workspace


E2E_PAIRS = ("BTC/USDT", "ETH/USDT", "XRP/USDT")
E2E_DAYS = 10

#: Imported at start-up by every Python process that has its directory on PYTHONPATH, which
#: includes hyperopt's loky workers: installs the network guard there and leaves a marker file
#: per process so a test can prove the workers were guarded.
_SITECUSTOMIZE = '''\
import os
import sys

try:
    from freqtrade_opt_plugin.offline.netguard import install_network_guard

    install_network_guard()
    _markers = os.environ.get("FTOPT_E2E_GUARD_MARKERS")
    if _markers:
        open(os.path.join(_markers, str(os.getpid())), "w").close()
except Exception as exc:  # pragma: no cover - reported in the run's log
    print(f"e2e sitecustomize: network guard not installed: {exc!r}", file=sys.stderr)
'''


@pytest.fixture(scope="session")
def e2e_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A small workspace (3 pairs x 10 days of 5m candles, SampleStrategy), shared by the tests."""
    root = tmp_path_factory.mktemp("offline-ws")
    return create_workspace(root, E2E_PAIRS, days=E2E_DAYS, seed=7)


@pytest.fixture(scope="session")
def offline_env(no_network_env) -> dict[str, str]:
    """Environment for runs that must not reach the network (stock Freqtrade behaviour)."""
    return {"FREQTRADE_OPT_LEVEL": "disabled", **no_network_env}


@pytest.fixture(scope="session")
def guarded_env(tmp_path_factory: pytest.TempPathFactory, offline_env) -> dict[str, str]:
    """``offline_env`` plus the network guard in every process, workers included (see above)."""
    import os

    site_dir = tmp_path_factory.mktemp("sitecustomize")
    (site_dir / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    markers = tmp_path_factory.mktemp("guard-markers")
    package_parent = str(Path(__file__).resolve().parents[2])
    paths = [str(site_dir), package_parent, *filter(None, os.environ.get("PYTHONPATH", "")
                                                    .split(os.pathsep))]
    return {**offline_env, "PYTHONPATH": os.pathsep.join(paths),
            "FTOPT_E2E_GUARD_MARKERS": str(markers)}


@pytest.fixture(scope="session")
def baseline_run(e2e_workspace, offline_env):
    """One offline backtest of the shared workspace, reused by several tests."""
    from freqtrade_opt_plugin.offline.workspace import run_backtest

    return run_backtest(e2e_workspace, offline_env, name="baseline")
