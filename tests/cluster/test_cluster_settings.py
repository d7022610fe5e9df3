"""Cluster settings, the version comparison and the data hand-over, without a cluster."""

from __future__ import annotations

import logging
import sys
import types

import pytest
from freqtrade.strategy import IStrategy

from freqtrade_opt_plugin import settings as plugin_settings
from freqtrade_opt_plugin.cluster import settings as cluster_settings
from freqtrade_opt_plugin.cluster import shipping, versions


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in ("SCHEDULER", "TIMEOUT_SECONDS", "TLS_CA_FILE", "TLS_CERT", "TLS_KEY"):
        monkeypatch.delenv(f"FREQTRADE_OPT_DASK_{key}", raising=False)
    plugin_settings._reported.clear()


def test_no_scheduler_means_local_run():
    assert not cluster_settings.load({}).enabled
    assert not cluster_settings.load(None).enabled
    assert cluster_settings.load({"freqtrade_opt": {"dask": {"scheduler": " "}}}).scheduler is None


def test_environment_wins_over_config(monkeypatch):
    config = {"freqtrade_opt": {"dask": {"scheduler": "tcp://config:8786"}}}
    assert cluster_settings.load(config).scheduler == "tcp://config:8786"
    monkeypatch.setenv("FREQTRADE_OPT_DASK_SCHEDULER", "tcp://env:8786")
    assert cluster_settings.load(config).scheduler == "tcp://env:8786"


def test_bad_address_is_named_and_ignored(monkeypatch, caplog):
    monkeypatch.setenv("FREQTRADE_OPT_DASK_SCHEDULER", "host:8786")
    with caplog.at_level(logging.WARNING):
        loaded = cluster_settings.load({})
    assert loaded.scheduler is None
    assert "env FREQTRADE_OPT_DASK_SCHEDULER='host:8786' is invalid" in caplog.text
    assert "tcp://host:8786" in caplog.text


def test_dask_section_and_variables_are_not_reported_as_unknown(monkeypatch):
    monkeypatch.setenv("FREQTRADE_OPT_DASK_SCHEDULER", "tcp://127.0.0.1:8786")
    loaded = plugin_settings.load_settings({"dask": {"scheduler": "tcp://x:1"}}, ["tick_size"])
    assert loaded.problems == ()


def test_unreachable_scheduler_is_a_clear_error():
    settings = cluster_settings.DaskSettings(scheduler="tcp://127.0.0.1:9", timeout_seconds=1)
    with pytest.raises(cluster_settings.ClusterError, match="cannot reach the Dask scheduler "
                                                            "tcp://127.0.0.1:9 within 1 s"):
        cluster_settings.connect(settings)


def test_tls_settings_make_a_security_object(tmp_path):
    plain = cluster_settings.DaskSettings(scheduler="tcp://h:1")
    assert plain.security() is None
    files = {name: tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem")}
    for path in files.values():
        path.write_text("x")
    tls = cluster_settings.DaskSettings(
        scheduler="tls://h:1", tls_ca_file=files["ca.pem"], tls_cert=files["cert.pem"],
        tls_key=files["key.pem"]).security()
    assert tls.require_encryption and tls.tls_ca_file == str(files["ca.pem"])
    assert tls.tls_client_cert == str(files["cert.pem"])


def test_version_differences_name_what_differs():
    here = versions.local_versions(["json"])
    assert versions.differences(here, here) == []
    other = {**here, "freqtrade-opt-plugin": "9.9", "strategy modules": {"json": "abc"}}
    found = versions.differences(here, other)
    assert found[0] == f"freqtrade-opt-plugin 9.9 (here: {here['freqtrade-opt-plugin']})"
    assert found[1].startswith("strategy module 'json' source abc (here: ")


class ImportableStrategy(IStrategy):
    """Importable by name (this test module): a worker must have the same source."""


def test_strategy_loaded_from_a_file_travels_by_value():
    assert versions.by_reference_modules(ImportableStrategy) == [__name__]
    module = types.ModuleType("loaded_from_file")  # like Freqtrade's resolver: not in sys.modules
    exec("from freqtrade.strategy import IStrategy\nclass FromFile(IStrategy):\n    pass\n",
         module.__dict__)
    assert "loaded_from_file" not in sys.modules
    assert versions.by_reference_modules(module.FromFile) == []


def test_settings_for_workers_leave_out_local_places():
    shipped = shipping.plugin_settings_environ({
        "FREQTRADE_OPT_LEVEL": "standard", "_FREQTRADE_OPT_CONFIG": "{}", "PATH": "/bin",
        "FREQTRADE_OPT_STATE_DIR": "/main/only", "FREQTRADE_OPT_DASK_SCHEDULER": "tcp://h:1",
        "_FREQTRADE_OPT_USER_DATA_DIR": "/main/user_data"})
    assert shipped == {"FREQTRADE_OPT_LEVEL": "standard", "_FREQTRADE_OPT_CONFIG": "{}"}


def test_run_context_writes_the_data_once_and_removes_it(tmp_path):
    payload = b"joblib bytes" * 1000
    context = shipping.RunContext(payload, {})  # (settings: applied on real workers only)
    worker = types.SimpleNamespace(local_directory=str(tmp_path))
    context.setup(worker)
    path = shipping.data_file(context.digest)
    assert path.parent == tmp_path and path.read_bytes() == payload
    assert context.payload is None  # the worker keeps the file, not the bytes
    context.teardown(worker)
    assert not path.exists()
    with pytest.raises(shipping.WorkerMismatch, match=context.digest[:16]):
        shipping.data_file(context.digest)


def test_worker_joining_with_other_code_is_named(tmp_path, monkeypatch):
    here = versions.local_versions()
    context = shipping.RunContext(b"data", {}, {**here, "freqtrade": "1999.1"})
    worker = types.SimpleNamespace(local_directory=str(tmp_path))
    context.setup(worker)
    try:
        with pytest.raises(shipping.WorkerMismatch, match=r"worker 'late' \(tcp://x:1\) joined "
                                                          r"the run with other code.*freqtrade"):
            shipping.data_file(context.digest, "'late' (tcp://x:1)")
    finally:
        context.teardown(worker)


def test_damaged_data_is_refused(tmp_path):
    context = shipping.RunContext(b"good", {})
    context.payload = b"evil"
    with pytest.raises(ValueError, match="arrived damaged"):
        context.setup(types.SimpleNamespace(local_directory=str(tmp_path)))


def test_start_wrapper_is_installed_and_undone_through_activation():
    import subprocess

    from freqtrade_opt_plugin.offline.workspace import subprocess_env

    code = (
        "import freqtrade.optimize.hyperopt.hyperopt as m\n"
        "from freqtrade_opt_plugin import activation\n"
        "import inspect\n"
        "original = inspect.unwrap(m.Hyperopt.start)  # below every layer (gc freeze too)\n"
        "assert getattr(m.Hyperopt.start, '__freqtrade_opt_cluster__', False)\n"
        "activation.deactivate()\n"
        "assert m.Hyperopt.start is original\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), text=True,
                          capture_output=True, timeout=120, check=False)
    assert done.stdout.strip().endswith("ok"), done.stderr[-2000:]
