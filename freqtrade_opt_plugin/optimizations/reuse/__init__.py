"""Result and indicator reuse (``backtest_cache``, ``indicator_cache``), sound by construction.

* `recording`: what a storing run touched at run time (user code, modules, environment, files,
  clocks and randomness, module-level state);
* `user_code`: the strategy's user code, its static digest and scan;
* `state`: hashing the strategy's state;
* `reads`: config and DataProvider reads of indicator code, manifests;
* `indicators`: per-pair indicator reuse (``IStrategy.advise_all_indicators``);
* `restore`: a stored backtest result as plain data, and restoring it exactly;
* `backtest_results`: whole-backtest reuse (``Backtesting.backtest``).
"""
