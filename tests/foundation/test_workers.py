"""Hyperopt's workers are fresh interpreters (joblib/loky): the auto-load patches them too."""


def test_loky_workers_are_patched(run_python):
    out, _ = run_python("""
        import json
        from joblib import Parallel, delayed

        def probe(_):
            import os
            import freqtrade.optimize.backtesting as bt
            return os.getpid(), hasattr(bt.Backtesting._get_ohlcv_as_lists, "__freqtrade_opt__")

        import os
        results = Parallel(n_jobs=2, backend="loky")(delayed(probe)(i) for i in range(4))
        print(json.dumps({"worker_pids": sorted({pid for pid, _ in results}),
                          "parent_pid": os.getpid(), "patched": [p for _, p in results]}))
    """)
    assert out["patched"] == [True] * 4
    assert out["parent_pid"] not in out["worker_pids"]
