"""Memory probe for ``benchmarks/bench_cluster_memory.py`` (on PYTHONPATH of the measured runs).

With ``FTOPT_MEMPROBE_DIR`` set, every Python process that runs a hyperopt epoch (a loky worker or
a Dask worker) appends one JSON line per event to ``<dir>/<pid>.jsonl``: RSS and peak RSS
(``VmHWM``) from ``/proc/self/status``, glibc's heap in use and free-but-held (``mallinfo2``)
and the thread. Events: ``setup`` (after the cluster run plugin set the worker up) and ``before``
/ ``after`` each ``HyperOptimizer.generate_optimizer``. It changes no result: it only wraps.
"""

from __future__ import annotations

import os


_DIR = os.environ.get("FTOPT_MEMPROBE_DIR")


def _install() -> None:
    import ctypes
    import importlib.abc
    import json
    import sys
    import threading
    import time

    try:
        libc = ctypes.CDLL("libc.so.6")

        class _Mallinfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost")]

        libc.mallinfo2.restype = _Mallinfo2
    except (OSError, AttributeError):
        libc = None

    counter = {"epochs": 0}

    def status() -> dict:
        out = {}
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
        if libc is not None:
            info = libc.mallinfo2()
            out["heap_used"] = (info.uordblks + info.hblkhd) / 2**20
            out["heap_free"] = info.fordblks / 2**20
        return out

    def record(event: str, **extra) -> None:
        line = {"event": event, "t": time.time(), "thread": threading.current_thread().name,
                "argv0": os.path.basename(sys.argv[0]) if sys.argv else "", **status(), **extra}
        with open(os.path.join(_DIR, f"{os.getpid()}.jsonl"), "a") as handle:
            handle.write(json.dumps(line) + "\n")

    def patch_optimizer(module) -> None:
        original = module.HyperOptimizer.generate_optimizer

        def generate_optimizer(self, params_dict):
            counter["epochs"] += 1
            record("before", epoch=counter["epochs"])
            try:
                return original(self, params_dict)
            finally:
                record("after", epoch=counter["epochs"])

        module.HyperOptimizer.generate_optimizer = generate_optimizer

    def patch_shipping(module) -> None:
        original = module.RunContext.setup

        def setup(self, worker):
            record("before_setup")
            original(self, worker)
            record("setup")

        module.RunContext.setup = setup

    hooks = {"freqtrade.optimize.hyperopt.hyperopt_optimizer": patch_optimizer,
             "freqtrade_opt_plugin.cluster.shipping": patch_shipping}

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in hooks:
                return None
            sys.meta_path.remove(self)
            try:
                import importlib.util

                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            if spec is None or spec.loader is None:
                return spec
            exec_module, hook = spec.loader.exec_module, hooks[name]

            def run(module):
                exec_module(module)
                hook(module)

            spec.loader.exec_module = run
            return spec

    sys.meta_path.insert(0, _Finder())


if _DIR:
    _install()
