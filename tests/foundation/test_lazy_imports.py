"""`lazy_imports`: scipy.stats imported by Freqtrade but loaded on first use when ``p_value`` is
on; every way of using it still gets the one real module. Checked in fresh interpreters (this
test process has scipy.stats loaded long ago)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from freqtrade_opt_plugin import lazy_imports
from freqtrade_opt_plugin.offline.workspace import subprocess_env


def run_python(code: str, **env: str) -> dict:
    """Run `code` in a fresh interpreter (start-up hook on) and return the JSON it prints last."""
    base = {k: v for k, v in subprocess_env().items()
            if not k.startswith("FREQTRADE_OPT_") and k != "_FREQTRADE_OPT_CONFIG"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**base, **env},
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


LIGHT = """
import json, sys, types
from freqtrade.data import metrics  # the module importing scipy.stats (no plugin activation)
from freqtrade_opt_plugin import lazy_imports
out = {"deferred_after_import": lazy_imports.is_deferred("scipy.stats"),
       "same_object": metrics.stats is sys.modules["scipy.stats"],
       "decision": lazy_imports.decision}
"""
PRELUDE = """
import json, sys, types
import freqtrade.optimize.backtesting
from freqtrade.data import metrics
from freqtrade_opt_plugin import lazy_imports
out = {"deferred_after_import": lazy_imports.is_deferred("scipy.stats"),
       "same_object": metrics.stats is sys.modules["scipy.stats"],
       "decision": lazy_imports.decision}
"""


def test_standard_level_defers_scipy_stats_until_an_attribute_is_read():
    out = run_python(PRELUDE + """
import scipy.special  # what the p-value computation uses does not load it
out["deferred_after_special"] = lazy_imports.is_deferred("scipy.stats")
out["spec_name"] = sys.modules["scipy.stats"].__spec__.name  # import-system reads pass
out["deferred_after_spec"] = lazy_imports.is_deferred("scipy.stats")
sys.modules["scipy.stats"].marker_set_before = 42  # setting does not load; kept after loading
out["deferred_after_set"] = lazy_imports.is_deferred("scipy.stats")
p = metrics.stats.ttest_1samp([1.0, 2.0, 4.0], popmean=0).pvalue
out["loaded_by_use"] = not lazy_imports.is_deferred("scipy.stats")
out["plain_module"] = type(sys.modules["scipy.stats"]) is types.ModuleType
out["real_loader"] = type(sys.modules["scipy.stats"].__loader__).__name__
out["p"] = float(p)
out["marker"] = metrics.stats.marker_set_before
print(json.dumps(out))
""", FREQTRADE_OPT_LEVEL="standard")
    assert out["deferred_after_import"] and out["same_object"]
    assert out["decision"].startswith("deferred until first use (level standard >= tier")
    assert out["deferred_after_special"] and out["deferred_after_spec"]
    assert out["deferred_after_set"] and out["marker"] == 42
    assert out["spec_name"] == "scipy.stats"
    assert out["loaded_by_use"] and out["plain_module"]
    assert out["real_loader"] == "SourceFileLoader"
    from scipy import stats

    assert out["p"] == float(stats.ttest_1samp([1.0, 2.0, 4.0], popmean=0).pvalue)


@pytest.mark.parametrize("first_use", [
    "from scipy.stats import norm; value = norm.cdf(1.0)",
    "import scipy.stats; value = scipy.stats.norm.cdf(1.0)",
    "import scipy.stats as st; value = st.distributions.norm.cdf(1.0)",
    "from scipy.stats.distributions import norm; value = norm.cdf(1.0)",  # imported by the parent
    "import scipy.stats._stats_py as sp; value = float(sp.ttest_1samp([1., 2., 4.], 0).pvalue)",
    "import scipy.stats.qmc as qmc; value = float(qmc.Sobol(d=1, seed=1).random(1)[0, 0])",
    "from scipy import stats; value = len(dir(stats))",
])
def test_every_way_of_using_it_gets_the_one_real_module(first_use):
    out = run_python(LIGHT + f"""
{first_use}
stats = sys.modules["scipy.stats"]
out["loaded"] = type(stats) is types.ModuleType and not lazy_imports.is_deferred("scipy.stats")
out["parent_attribute"] = sys.modules["scipy"].stats is stats is metrics.stats
out["submodules_unique"] = all(
    getattr(stats, name.rpartition(".")[2], module) is module
    for name, module in list(sys.modules.items()) if name.startswith("scipy.stats.")
    and name.count(".") == 2)
out["functions_unique"] = (
    stats.ttest_1samp is sys.modules["scipy.stats._stats_py"].ttest_1samp
    and stats.norm is sys.modules["scipy.stats.distributions"].norm)
out["specs"] = sorted({{type(m.__spec__.loader).__name__ for n, m in sys.modules.items()
                       if n.startswith("scipy.stats")}})
out["value"] = float(value)
print(json.dumps(out))
""", FREQTRADE_OPT_LEVEL="standard")
    assert out["deferred_after_import"], out
    assert out["loaded"] and out["parent_attribute"], out
    assert out["submodules_unique"] and out["functions_unique"], out
    assert set(out["specs"]) <= {"SourceFileLoader", "ExtensionFileLoader"}, out


@pytest.mark.parametrize("env, reason", [
    ({}, "level disabled < tier standard"),
    ({"FREQTRADE_OPT_LEVEL": "standard", "FREQTRADE_OPT_P_VALUE": "false"}, "flag off"),
    ({"FREQTRADE_OPT_LEVEL": "aggressive", "FREQTRADE_OPT_P_VALUE_PERCENTAGE": "0"},
     "rollout 0%"),
    ({"FREQTRADE_OPT_LEVEL": "standard", "FREQTRADE_OPT_AUTOLOAD": "0"}, None),
])
def test_switched_off_nothing_changes(env, reason):
    out = run_python("""
import json, sys, types
import freqtrade.data.metrics
from freqtrade_opt_plugin import lazy_imports
print(json.dumps({"plain": type(sys.modules["scipy.stats"]) is types.ModuleType,
                  "finder": any(type(f).__name__ == "_LazyFinder" for f in sys.meta_path),
                  "decision": lazy_imports.decision}))
""", **env)
    assert out["plain"] and not out["finder"]
    if reason is None:
        assert out["decision"].startswith("not decided")  # the start-up hook never ran
    else:
        assert out["decision"].startswith(f"not deferred: {reason}"), out


def test_plugin_p_value_call_keeps_scipy_stats_unloaded():
    out = run_python(PRELUDE + """
import pandas as pd, struct
from freqtrade.optimize.optimize_reports import optimize_reports
trades = pd.DataFrame({"profit_abs": [1.5, -0.25, 3.0, 0.75, -1.0]})
got = optimize_reports.calculate_p_value(trades, 1000.0)
out["deferred_after_call"] = lazy_imports.is_deferred("scipy.stats")
out["routed"] = hasattr(optimize_reports.calculate_p_value, "__wrapped__")
original = metrics.calculate_p_value.__wrapped__
out["identical"] = struct.pack("<d", got) == struct.pack("<d", original(trades, 1000.0))
print(json.dumps(out))
""", FREQTRADE_OPT_LEVEL="standard")
    assert out == {**out, "deferred_after_import": True, "deferred_after_call": True,
                   "routed": True, "identical": True}


@pytest.mark.parametrize("env, expected", [
    ({}, False),
    ({"FREQTRADE_OPT_LEVEL": "conservative"}, False),
    ({"FREQTRADE_OPT_LEVEL": "standard"}, True),
    ({"FREQTRADE_OPT_LEVEL": "4"}, True),
    ({"FREQTRADE_OPT_LEVEL": "bogus"}, False),
    ({"FREQTRADE_OPT_P_VALUE": "yes"}, True),
    ({"FREQTRADE_OPT_P_VALUE": "maybe", "FREQTRADE_OPT_LEVEL": "standard"}, False),
    ({"FREQTRADE_OPT_P_VALUE": "off", "FREQTRADE_OPT_LEVEL": "experimental"}, False),
    ({"FREQTRADE_OPT_P_VALUE_PERCENTAGE": "0", "FREQTRADE_OPT_P_VALUE": "true"}, False),
    ({"FREQTRADE_OPT_P_VALUE_PERCENTAGE": "50", "FREQTRADE_OPT_LEVEL": "standard"}, True),
])
def test_decision_from_the_environment(env, expected):
    assert lazy_imports.enabled_by_environment(env)[0] is expected


def test_decision_from_the_section_handed_down(monkeypatch):
    monkeypatch.delenv("FREQTRADE_OPT_LEVEL", raising=False)
    monkeypatch.delenv("FREQTRADE_OPT_P_VALUE", raising=False)
    monkeypatch.setenv("_FREQTRADE_OPT_CONFIG", json.dumps({"level": "standard"}))
    assert lazy_imports.enabled_by_environment() == (True, "level standard >= tier standard")
    monkeypatch.setenv("_FREQTRADE_OPT_CONFIG", json.dumps(
        {"level": "standard", "optimizations": {"p_value": {"enabled": False}}}))
    assert lazy_imports.enabled_by_environment()[0] is False


def test_threads_using_it_at_once_all_get_the_loaded_module():
    out = run_python(LIGHT + """
import faulthandler, threading
faulthandler.dump_traceback_later(90, exit=True)  # a deadlock fails the test with the stacks
results, errors = [], []
barrier = threading.Barrier(4)
def use(kind):
    try:
        barrier.wait()
        if kind == "attribute":
            results.append(float(metrics.stats.norm.cdf(0.0)))
        else:
            import scipy.stats.qmc as qmc  # a submodule import racing the attribute loads
            results.append(float(qmc.Sobol(d=1, seed=1).random(1)[0, 0]) * 0 + 0.5)
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=use, args=(k,)) for k in
           ("attribute", "attribute", "submodule", "attribute")]
for t in threads: t.start()
for t in threads: t.join(120)
out.update(results=results, errors=errors, alive=any(t.is_alive() for t in threads),
           loaded=not lazy_imports.is_deferred("scipy.stats"))
print(json.dumps(out))
""", FREQTRADE_OPT_LEVEL="standard")
    assert out["deferred_after_import"] and out["loaded"] and not out["alive"], out
    assert out["errors"] == [] and out["results"] == [0.5] * 4, out
