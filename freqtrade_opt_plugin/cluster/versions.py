"""The version check: every worker must run the same code as the main process.

Compared per worker before the first epoch: Python (major.minor: cloudpickled code objects need
it), Freqtrade, this plugin, and the source of each strategy module the worker would import by
name (a module loaded from the strategy file travels by value inside the epoch's pickle, so it is
the same by construction; one importable by name must have the same source on the worker).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import platform
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from freqtrade_opt_plugin.cluster.settings import ClusterError


def _sha(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()[:16]


def _module_source_digest(name: str) -> str:
    """sha256 (16 hex) of module `name`'s source as this interpreter would import it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        return f"not importable ({type(exc).__name__})"
    if spec is None or not spec.origin or not spec.has_location:
        return "not importable"
    try:
        with open(spec.origin, "rb") as handle:
            return _sha(handle.read())
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def by_reference_modules(strategy_class: type) -> list[str]:
    """Strategy modules (outside Freqtrade) that cloudpickle sends by name, not by value."""
    from cloudpickle import cloudpickle as cp

    names = []
    for klass in inspect.getmro(strategy_class):
        module_name = klass.__module__
        module = sys.modules.get(module_name)
        if module is None or module_name in names or module_name == "builtins" \
                or module_name.split(".")[0] in ("freqtrade", "abc"):
            continue
        if cp._should_pickle_by_reference(klass):
            names.append(module_name)
    return names


def local_versions(modules: Iterable[str] = ()) -> dict[str, Any]:
    """What this interpreter runs (called in the main process and, by `client.run`, on workers)."""
    import freqtrade

    import freqtrade_opt_plugin

    return {
        "python": ".".join(platform.python_version_tuple()[:2]),
        "freqtrade": getattr(freqtrade, "__version__", "unknown"),
        "freqtrade-opt-plugin": freqtrade_opt_plugin.__version__,
        "strategy modules": {name: _module_source_digest(name) for name in modules},
    }


def differences(expected: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between the main process's versions and a worker's."""
    out = []
    for key in ("python", "freqtrade", "freqtrade-opt-plugin"):
        if expected.get(key) != found.get(key):
            out.append(f"{key} {found.get(key)} (here: {expected.get(key)})")
    ours, theirs = expected.get("strategy modules", {}), found.get("strategy modules", {})
    for name, digest in ours.items():
        if theirs.get(name) != digest:
            out.append(f"strategy module '{name}' source {theirs.get(name)} (here: {digest})")
    return out


def worker_names(client: Any) -> dict[str, str]:
    """address -> "name (address)" of every worker the scheduler knows."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return {address: f"'{info.get('name')}' ({address})" if info.get("name") not in (None, address)
            else address for address, info in workers.items()}


def check_workers(client: Any, modules: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Versions of every worker; ClusterError naming each worker that differs (or has none)."""
    modules = list(modules)
    expected = local_versions(modules)
    found = client.run(local_versions, modules, on_error="return")
    if not found:
        raise ClusterError(f"the Dask cluster at {client.scheduler.address} has no workers; "
                           "start some with 'dask worker <scheduler> --nthreads 1'")
    names = worker_names(client)
    problems = []
    for address, versions in sorted(found.items()):
        worker = names.get(address, address)
        if isinstance(versions, BaseException):
            problems.append(f"worker {worker}: version check failed "
                            f"({type(versions).__name__}: {versions}); is freqtrade-opt-plugin "
                            "installed there?")
            continue
        diff = differences(expected, versions)
        if diff:
            problems.append(f"worker {worker} runs {', '.join(diff)}")
    if problems:
        raise ClusterError("workers differ from this machine, results could differ; stop them "
                           "or install the same versions:\n  " + "\n  ".join(problems))
    return found
