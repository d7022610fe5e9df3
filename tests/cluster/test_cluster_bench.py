"""Arithmetic of ``freqtrade-opt bench --hyperopt --dask`` (the runs themselves: test_cluster_*)."""

from __future__ import annotations

from rich.console import Console

from freqtrade_opt_plugin.cluster import bench as cluster_bench
from freqtrade_opt_plugin.commands import bench


def _run(variant: str, rep: int, epochs: int, wall: float, cpu: float) -> dict:
    return {"variant": variant, "repetition": rep, "epochs_requested": epochs,
            "wall_time": wall, "cpu_time": cpu, "loadavg_before": [1.0, 1.0, 1.0]}


def test_overhead_per_epoch_is_dask_marginal_minus_loky_marginal():
    entry = {"label": "1x1", "comparisons": [{"identical": True}], "runs": [
        _run("loky", 1, 11, 30.0, 20.0), _run("loky", 1, 1, 10.0, 8.0),
        _run("dask", 1, 11, 26.0, 19.0), _run("dask", 1, 1, 4.0, 6.0),
    ]}
    cluster_bench._summarize(entry, 11, marginal=True)
    assert entry["loky"]["marginal_epoch"]["median"] == 2.0
    assert entry["dask"]["marginal_epoch"]["median"] == 2.2
    assert entry["overhead_per_epoch"] == 0.2
    assert entry["overhead_per_epoch_cpu"] == 0.1  # (13/10) - (12/10)
    assert entry["overhead_startup"] == -6.0
    assert entry["verdict"] == bench.IDENTICAL
    report = {"settings": {"jobs": 2, "workers": 2, "epochs": 11, "repeat": 1,
                           "hidden_caller_env": []},
              "sizes": [entry], "verdict": bench.IDENTICAL,
              "machine": {"cpu_count": 2, "cpu_usable": 2, "python": "3", "plugin_version": "x",
                          "freqtrade_version": "y", "loadavg_start": None}}
    console = Console(record=True, width=250)
    cluster_bench.print_cluster_table(console, report)
    text = console.export_text()
    assert "0.20 s" in text and "identical" in text


def test_cli_has_the_dask_flag():
    import argparse

    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers())
    args = parser.parse_args(["bench", "--hyperopt", "--dask", "-j", "2"])
    assert args.dask and args.hyperopt and args.jobs == 2
