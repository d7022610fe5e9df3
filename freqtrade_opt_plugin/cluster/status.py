"""The cluster part of ``freqtrade-opt status``: workers, threads and the versions they run."""

from __future__ import annotations

from typing import Any

from freqtrade_opt_plugin.cluster import settings as cluster_settings


def cluster_status(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"scheduler": None} without a cluster; else its workers, or the error reaching it."""
    settings = cluster_settings.load(config)
    if not settings.enabled:
        return {"scheduler": None}
    out: dict[str, Any] = {"scheduler": settings.scheduler, "workers": [], "error": None}
    try:
        client = cluster_settings.connect(settings)
    except cluster_settings.ClusterError as exc:
        out["error"] = str(exc)
        return out
    try:
        from freqtrade_opt_plugin.cluster import versions

        expected = versions.local_versions()
        found = client.run(versions.local_versions, on_error="return")
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        for address, info in sorted(workers.items()):
            found_here = found.get(address)
            if isinstance(found_here, BaseException) or found_here is None:
                row = {"versions": None, "problems": [f"version check failed: {found_here!r}"]}
            else:
                row = {"versions": found_here,
                       "problems": versions.differences(expected, found_here)}
            out["workers"].append({"address": address, "name": str(info.get("name")),
                                   "threads": info.get("nthreads"), **row})
    except Exception as exc:  # status must always print something
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return out


def print_cluster(console: Any, cluster: dict[str, Any]) -> None:
    """The "Dask cluster" table of ``freqtrade-opt status``."""
    from rich.markup import escape
    from rich.table import Table

    if not cluster or cluster.get("scheduler") is None:
        console.print("Dask cluster: none (set FREQTRADE_OPT_DASK_SCHEDULER to use one)")
        return
    if cluster.get("error"):
        console.print(f"[red]Dask cluster {cluster['scheduler']}:[/] {escape(cluster['error'])}")
    table = Table("worker", "address", "threads", "python", "freqtrade", "plugin", "same code",
                  title=f"Dask cluster {cluster['scheduler']}")
    for worker in cluster.get("workers", []):
        found = worker["versions"] or {}
        same = "[green]yes[/]" if not worker["problems"] else \
            "[red]no: " + escape("; ".join(worker["problems"])) + "[/]"
        table.add_row(worker["name"], worker["address"], str(worker["threads"]),
                      str(found.get("python", "-")), str(found.get("freqtrade", "-")),
                      str(found.get("freqtrade-opt-plugin", "-")), same)
    console.print(table)
