"""A real Dask cluster (``dask scheduler`` + ``dask worker`` subprocesses on 127.0.0.1) and a
small workspace, shared by the cluster tests of a module.

Every worker runs in its own directory and imports the `sitecustomize` below, which
- forbids opening any file under the workspace (an audit hook: the main process's
  ``hyperopt_tickerdata.pkl`` is unreadable to workers, as on another machine), and
- with ``FTOPT_TEST_FAKE_PLUGIN_VERSION`` set, makes that worker's plugin report another version.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from freqtrade_opt_plugin.cluster.local import LocalCluster, start_local_cluster
from freqtrade_opt_plugin.offline.workspace import (
    HyperoptRun,
    Workspace,
    create_workspace,
    run_hyperopt,
    sample_strategy_source,
    subprocess_env,
)


PAIRS = ("BTC/USDT", "ETH/USDT")
DAYS = 7
EPOCHS = 6
JOBS = 2
RANDOM_STATE = 3

_SITECUSTOMIZE = '''\
import os
import sys

_forbidden = os.environ.get("FTOPT_TEST_FORBIDDEN_DIR")
if _forbidden:
    _forbidden = os.path.realpath(_forbidden)

    def _no_reads_under_workspace(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            if os.path.realpath(path).startswith(_forbidden + os.sep):
                raise PermissionError(f"cluster test: worker may not open {path}")

    sys.addaudithook(_no_reads_under_workspace)

_fake = os.environ.get("FTOPT_TEST_FAKE_PLUGIN_VERSION")
if _fake:
    import freqtrade_opt_plugin

    freqtrade_opt_plugin.__version__ = _fake
'''


LOGGING_STRATEGY = "LoggingStrategy"
LOG_LINE = "cluster test: entry signals computed in process"


def _logging_strategy_source() -> str:
    """Freqtrade's SampleStrategy that logs (INFO, own logger) each time an epoch runs it."""
    source = sample_strategy_source().read_text()
    head = "class SampleStrategy(IStrategy):"
    entry = ("    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) "
             "-> DataFrame:\n")
    assert source.count(head) == 1 and source.count(entry) == 1, "template changed"
    source = source.replace(head, f"class {LOGGING_STRATEGY}(IStrategy):")
    source = source.replace(entry, entry + f"        logging.getLogger(__name__).info("
                                           f"'{LOG_LINE} %d', os.getpid())\n")
    return "import logging\nimport os\n" + source


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """2 pairs x 7 days; the strategy is SampleStrategy logging from every epoch."""
    created = create_workspace(tmp_path_factory.mktemp("cluster-ws"), PAIRS, days=DAYS, seed=5)
    strategies = created.user_data / "strategies"
    (strategies / "logging_strategy.py").write_text(_logging_strategy_source())
    (strategies / "sample_strategy.py").unlink()  # one strategy per directory: no name clash
    return replace(created, strategy=LOGGING_STRATEGY)


@pytest.fixture(scope="module")
def local_run(workspace: Workspace) -> HyperoptRun:
    """The reference: the same hyperopt with loky on this machine."""
    return run_hyperopt(workspace, {}, epochs=EPOCHS, jobs=JOBS, random_state=RANDOM_STATE,
                        name="local")


@pytest.fixture(scope="module")
def worker_env(tmp_path_factory: pytest.TempPathFactory, workspace: Workspace) -> dict[str, str]:
    """Environment of the workers: the test sitecustomize, the workspace forbidden."""
    site_dir = tmp_path_factory.mktemp("cluster-site")
    (site_dir / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = subprocess_env({"FTOPT_TEST_FORBIDDEN_DIR": str(workspace.root)})
    env["PYTHONPATH"] = os.pathsep.join([str(site_dir), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, worker_env: dict[str, str]):
    """A scheduler and two ``--nthreads 1`` workers (w1, w2, with nannies that restart a killed
    worker process), each in its own directory."""
    root = Path(tmp_path_factory.mktemp("cluster"))
    started: LocalCluster = start_local_cluster(root, 2, env=worker_env, nanny=True)
    try:
        yield started
    finally:
        started.stop()


def cluster_env(cluster: LocalCluster) -> dict[str, str]:
    return {"FREQTRADE_OPT_DASK_SCHEDULER": cluster.address}
