"""Throwaway Freqtrade workspaces and subprocess runs of the real CLI against them.

A workspace is a directory holding a complete ``user_data`` (config.json for binance spot dry-run,
or USDT-M futures with isolated margin, Freqtrade's SampleStrategy, generated candles).
``run_backtest`` / ``run_hyperopt`` run
``python -m freqtrade_opt_plugin.offline backtesting|hyperopt ...`` in a fresh process with the
environment you pass (e.g. ``{"FREQTRADE_OPT_LEVEL": "disabled"}``), time it, and load what
Freqtrade exported, using Freqtrade's own loaders.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import freqtrade_opt_plugin
from freqtrade_opt_plugin.offline.datagen import DEFAULT_END, GeneratedPair, write_pair_data
from freqtrade_opt_plugin.offline.markets import static_markets


STRATEGY_NAME = "SampleStrategy"
EXCHANGE = "binance"


class HarnessError(RuntimeError):
    """A Freqtrade subprocess failed; the message carries the command and the end of its log."""


@dataclass(frozen=True)
class Workspace:
    root: Path
    pairs: tuple[str, ...]
    days: float
    seed: int
    timeframe: str = "5m"
    strategy: str = STRATEGY_NAME
    data: tuple[GeneratedPair, ...] = ()
    trading_mode: str = "spot"

    @property
    def user_data(self) -> Path:
        return self.root / "user_data"

    @property
    def config_path(self) -> Path:
        return self.user_data / "config.json"

    @property
    def datadir(self) -> Path:
        return self.user_data / "data" / EXCHANGE

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def candles(self) -> int:
        return sum(d.candles for d in self.data)


@dataclass
class BacktestRun:
    """One finished ``freqtrade backtesting`` subprocess and what it exported."""

    command: list[str]
    env: dict[str, str]
    wall_time: float
    returncode: int
    result_dir: Path
    log_path: Path
    strategy: str
    stats: dict[str, Any] = field(repr=False)
    trades: pd.DataFrame = field(repr=False)

    @property
    def strategy_stats(self) -> dict[str, Any]:
        """The exported metrics of the strategy (``stats["strategy"][name]``)."""
        return self.stats["strategy"][self.strategy]

    @property
    def raw_trades(self) -> list[dict[str, Any]]:
        """Trades exactly as exported (JSON values, before any DataFrame conversion)."""
        return self.strategy_stats["trades"]


@dataclass
class HyperoptRun:
    """One finished ``freqtrade hyperopt`` subprocess and its epochs (in evaluation order)."""

    command: list[str]
    env: dict[str, str]
    wall_time: float
    returncode: int
    results_file: Path
    log_path: Path
    epochs: list[dict[str, Any]] = field(repr=False)

    @property
    def best(self) -> dict[str, Any]:
        return min(self.epochs, key=lambda e: e["loss"])


def sample_strategy_source() -> Path:
    """Freqtrade's shipped SampleStrategy (needs TA-Lib and technical, both Freqtrade deps)."""
    import freqtrade

    return Path(freqtrade.__file__).parent / "templates" / "sample_strategy.py"


def build_config(
    pairs: Sequence[str],
    *,
    timeframe: str = "5m",
    max_open_trades: int = 3,
    stake_currency: str = "USDT",
    dry_run_wallet: float = 1000,
    trading_mode: str = "spot",
    margin_mode: str = "",
) -> dict[str, Any]:
    """A binance dry-run config with a StaticPairList (no fiat conversion: no CoinGecko).

    ``trading_mode="futures"`` trades USDT-M perpetuals (pairs like ``BTC/USDT:USDT``) with
    ``margin_mode`` (default isolated).
    """
    if trading_mode not in ("spot", "futures"):
        raise ValueError(f"trading_mode must be 'spot' or 'futures', got {trading_mode!r}")
    if trading_mode == "futures":
        margin_mode = margin_mode or "isolated"
        if margin_mode not in ("isolated", "cross"):
            raise ValueError(f"margin_mode must be 'isolated' or 'cross', got {margin_mode!r}")
    elif margin_mode:
        raise ValueError(f"margin_mode {margin_mode!r} needs trading_mode 'futures'")
    return {
        "$schema": "https://schema.freqtrade.io/schema.json",
        "bot_name": "freqtrade-opt-offline",
        "max_open_trades": max_open_trades,
        "stake_currency": stake_currency,
        "stake_amount": "unlimited",
        "tradable_balance_ratio": 0.99,
        "timeframe": timeframe,
        "dry_run": True,
        "dry_run_wallet": dry_run_wallet,
        "cancel_open_orders_on_exit": False,
        "trading_mode": trading_mode,
        "margin_mode": margin_mode,
        "unfilledtimeout": {"entry": 10, "exit": 10, "exit_timeout_count": 0, "unit": "minutes"},
        "entry_pricing": {
            "price_side": "same",
            "use_order_book": True,
            "order_book_top": 1,
            "price_last_balance": 0.0,
            "check_depth_of_market": {"enabled": False, "bids_to_ask_delta": 1},
        },
        "exit_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
        "exchange": {
            "name": EXCHANGE,
            "key": "",
            "secret": "",
            "ccxt_config": {},
            "ccxt_async_config": {},
            "pair_whitelist": list(pairs),
            "pair_blacklist": [],
        },
        "pairlists": [{"method": "StaticPairList"}],
        "telegram": {"enabled": False, "token": "", "chat_id": ""},
        "initial_state": "running",
        "force_entry_enable": False,
        "internals": {"process_throttle_secs": 5},
        "dataformat_ohlcv": "feather",
    }


def create_workspace(
    root: Path,
    pairs: Sequence[str],
    *,
    days: float,
    seed: int = 42,
    timeframe: str = "5m",
    max_open_trades: int = 3,
    trading_mode: str = "spot",
    margin_mode: str = "",
) -> Workspace:
    """Create ``root/user_data`` with config, SampleStrategy and generated candles for ``pairs``
    (futures: also mark candles and funding rates; see `build_config` for the modes)."""
    from freqtrade.configuration.directory_operations import create_userdata_dir

    root = Path(root).resolve()
    known = static_markets()
    unknown = [p for p in pairs if p not in known]
    if unknown:
        raise ValueError(
            f"pairs not in the offline markets fixture: {unknown}; known: {', '.join(known)}"
        )
    user_data = create_userdata_dir(str(root / "user_data"), create_dir=True)
    config = build_config(pairs, timeframe=timeframe, max_open_trades=max_open_trades,
                          trading_mode=trading_mode, margin_mode=margin_mode)
    (user_data / "config.json").write_text(json.dumps(config, indent=4) + "\n")
    shutil.copyfile(sample_strategy_source(), user_data / "strategies" / "sample_strategy.py")
    data = write_pair_data(
        user_data / "data" / EXCHANGE, pairs, days=days, seed=seed, timeframe=timeframe,
        end=DEFAULT_END, trading_mode=trading_mode,
    )
    return Workspace(root, tuple(pairs), days, seed, timeframe, STRATEGY_NAME, tuple(data),
                     trading_mode)


def in_process_backtesting(workspace: Workspace, strategy: str | None = None) -> Any:
    """A real ``Backtesting`` for `workspace` in this process (static markets, no export), its
    strategy set and fees applied as ``Backtesting.start`` does: for benchmarks and tests that
    call ``backtest()`` directly."""
    from freqtrade.commands.optimize_commands import setup_optimize_configuration
    from freqtrade.enums import RunMode
    from freqtrade.optimize.backtesting import Backtesting

    from freqtrade_opt_plugin.offline.markets import install_static_markets

    install_static_markets()
    config = setup_optimize_configuration({
        "config": [str(workspace.config_path)], "user_data_dir": str(workspace.user_data),
        "strategy": strategy or workspace.strategy, "timeframe": workspace.timeframe,
        "export": "none",
    }, RunMode.BACKTEST)
    backtesting = Backtesting(config)
    backtesting._set_strategy(backtesting.strategylist[0])
    backtesting.set_fee()
    return backtesting


def in_process_hyperopt(
    workspace: Workspace,
    *,
    epochs: int = 4,
    jobs: int = 1,
    random_state: int = 42,
    spaces: Sequence[str] = ("buy", "sell"),
    loss: str = "SharpeHyperOptLoss",
) -> Any:
    """A real ``Hyperopt`` for `workspace` in this process (static markets, no parameter export),
    configured as ``run_hyperopt``'s command line would configure it; not yet started."""
    from freqtrade.commands.optimize_commands import setup_optimize_configuration
    from freqtrade.enums import RunMode
    from freqtrade.optimize.hyperopt import Hyperopt

    from freqtrade_opt_plugin.offline.markets import install_static_markets

    install_static_markets()
    config = setup_optimize_configuration({
        "config": [str(workspace.config_path)], "user_data_dir": str(workspace.user_data),
        "strategy": workspace.strategy, "timeframe": workspace.timeframe,
        "hyperopt_loss": loss, "spaces": list(spaces), "epochs": epochs,
        "hyperopt_jobs": jobs, "hyperopt_random_state": random_state, "hyperopt_min_trades": 1,
        "disableparamexport": True, "print_all": True,
    }, RunMode.HYPEROPT)
    return Hyperopt(config)


def offline_command(args: Sequence[str]) -> list[str]:
    """The argv that runs ``freqtrade <args>`` offline with this interpreter."""
    return [sys.executable, "-m", "freqtrade_opt_plugin.offline", *args]


def subprocess_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus ``overrides``, able to import this plugin checkout."""
    env = dict(os.environ)
    package_parent = str(Path(freqtrade_opt_plugin.__file__).resolve().parent.parent)
    site_dirs = {str(Path(p).resolve()) for p in site.getsitepackages()}
    if package_parent not in site_dirs:  # a source checkout, not an installed package
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if package_parent not in paths:
            env["PYTHONPATH"] = os.pathsep.join([package_parent, *paths])
    env.update(overrides or {})
    return env


_bytecode_compiled = False


def compile_plugin_bytecode() -> None:
    """Compile this plugin's modules to bytecode once per process, as pip does when it installs
    a package: a source checkout (editable install) used with ``PYTHONDONTWRITEBYTECODE`` would
    otherwise compile them again in every timed run. Best effort: a read-only checkout is left
    as it is."""
    global _bytecode_compiled
    if _bytecode_compiled:
        return
    _bytecode_compiled = True
    import compileall

    try:
        compileall.compile_dir(Path(freqtrade_opt_plugin.__file__).parent, quiet=2)
    except OSError:
        pass


def _run(
    args: list[str], env: Mapping[str, str] | None, log_path: Path, cwd: Path, timeout: float
) -> tuple[list[str], float, int]:
    command = offline_command(args)
    compile_plugin_bytecode()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        start = time.perf_counter()
        proc = subprocess.run(
            command, env=subprocess_env(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, timeout=timeout, check=False,
        )
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        _fail(command, f"exited with {proc.returncode}", log_path)
    return command, wall, proc.returncode


def _fail(command: Sequence[str], what: str, log_path: Path) -> None:
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
    raise HarnessError(f"{' '.join(command)} {what} (log: {log_path}):\n{tail}")


def _fresh_dir(parent: Path, name: str | None) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    base = name or "run"
    for i in range(1, 10_000):
        candidate = parent / f"{base}-{i:03d}"
        if not candidate.exists():
            candidate.mkdir()
            return candidate
    raise HarnessError(f"too many runs in {parent}")


def backtest_args(workspace: Workspace, result_dir: Path) -> list[str]:
    """Arguments of the backtest run (``--cache none``: never reuse an earlier run's result)."""
    return [
        "backtesting",
        "--config", str(workspace.config_path),
        "--userdir", str(workspace.user_data),
        "--strategy", workspace.strategy,
        "--timeframe", workspace.timeframe,
        "--export", "trades",
        "--backtest-directory", str(result_dir),
        "--cache", "none",
        "--no-color",
    ]


def run_backtest(
    workspace: Workspace,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    *,
    name: str | None = None,
    timeout: float = 1800,
) -> BacktestRun:
    """Run one backtest in a subprocess; raises ``HarnessError`` if Freqtrade fails."""
    from freqtrade.data.btanalysis import load_backtest_data, load_backtest_stats

    result_dir = _fresh_dir(workspace.runs_dir, name or "backtest")
    args = [*backtest_args(workspace, result_dir), *extra_args]
    log_path = result_dir / "freqtrade.log"
    command, wall, code = _run(args, env, log_path, workspace.root, timeout)
    if not (result_dir / ".last_result.json").is_file():
        # e.g. a configuration error, for which freqtrade exits with code 0
        _fail(command, "exported no backtest result", log_path)
    stats = load_backtest_stats(result_dir)
    trades = load_backtest_data(result_dir, workspace.strategy)
    return BacktestRun(
        command=command, env=dict(env or {}), wall_time=wall, returncode=code,
        result_dir=result_dir, log_path=log_path, strategy=workspace.strategy, stats=stats,
        trades=trades,
    )


def hyperopt_args(
    workspace: Workspace,
    *,
    epochs: int,
    jobs: int,
    random_state: int,
    spaces: Sequence[str],
    loss: str,
) -> list[str]:
    """Arguments of the hyperopt run (no parameter export: later backtests stay unaffected)."""
    return [
        "hyperopt",
        "--config", str(workspace.config_path),
        "--userdir", str(workspace.user_data),
        "--strategy", workspace.strategy,
        "--timeframe", workspace.timeframe,
        "--hyperopt-loss", loss,
        "--spaces", *spaces,
        "--epochs", str(epochs),
        "--job-workers", str(jobs),
        "--random-state", str(random_state),
        "--min-trades", "1",
        "--disable-param-export",
        "--print-all",
        "--no-color",
    ]


def run_hyperopt(
    workspace: Workspace,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    *,
    epochs: int = 6,
    jobs: int = 2,
    random_state: int = 42,
    spaces: Sequence[str] = ("buy", "sell"),
    loss: str = "SharpeHyperOptLoss",
    name: str | None = None,
    timeout: float = 1800,
) -> HyperoptRun:
    """Run a small, seeded hyperopt in a subprocess and load every epoch it recorded."""
    run_dir = _fresh_dir(workspace.runs_dir, name or "hyperopt")
    args = [
        *hyperopt_args(
            workspace, epochs=epochs, jobs=jobs, random_state=random_state, spaces=spaces,
            loss=loss,
        ),
        *extra_args,
    ]
    log_path = run_dir / "freqtrade.log"
    results_dir = workspace.user_data / "hyperopt_results"
    before = set(results_dir.glob("*.fthypt")) if results_dir.is_dir() else set()
    command, wall, code = _run(args, env, log_path, workspace.root, timeout)
    created = sorted(set(results_dir.glob("*.fthypt")) - before)
    if not created:
        _fail(command, "recorded no hyperopt epochs", log_path)
    results_file = created[-1]
    epochs_data = [
        json.loads(line) for line in results_file.read_text().splitlines() if line.strip()
    ]
    return HyperoptRun(
        command=command, env=dict(env or {}), wall_time=wall, returncode=code,
        results_file=results_file, log_path=log_path, epochs=epochs_data,
    )
