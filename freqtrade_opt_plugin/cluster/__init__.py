"""Hyperopt epochs on a Dask cluster, with results identical to a local run.

One concept per module: `settings` (where the cluster is, the connection), `shipping` (the data
file and settings each worker needs, content-addressed), `versions` (the same code everywhere),
`epochs` (one epoch on a worker), `hyperopt` (the ``Hyperopt.start`` wrapper), `status` (what
``freqtrade-opt status`` shows) and `bench` (cluster mode of ``freqtrade-opt bench --hyperopt``).
Dask is imported only when a scheduler is configured (``pip install "freqtrade-opt-plugin[dask]"``).
"""
