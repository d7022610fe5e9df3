"""``freqtrade-opt report --html``: a self-contained page, opened in real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from freqtrade_opt_plugin.cli import main
from freqtrade_opt_plugin.monitor import generate_performance_report
from freqtrade_opt_plugin.telemetry.html import CHART_IDS, figures

from .browser import artifact_dir, find_chromium, open_page


POINTS_PER_CHART = """JSON.stringify(Object.fromEntries(
  Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => [el.id,
    (el.data || []).reduce((n, t) => n + (t.y || []).filter(v => v !== null &&
      v !== undefined).length, 0)])))"""


def test_report_runs_carry_the_trends(history_state):
    _, runs = history_state
    report = generate_performance_report()
    assert [r["run"] for r in report["runs"]] == runs
    assert [r["level"] for r in report["runs"]] == [
        "standard", "standard", "standard", "aggressive", "aggressive", "aggressive", "disabled"]
    first = report["runs"][0]["optimizations"]["fast_fn"]
    assert first["speedup"] == pytest.approx(2.0, rel=0.1) and first["reference"] == "same run"
    assert first["adoption_rate"] == pytest.approx(0.5, abs=0.2)
    assert report["runs"][3]["optimizations"]["fast_fn"]["regression"] == [
        "slower_than_baseline"]
    assert report["runs"][2]["optimizations"]["fast_fn"]["regression"] == []
    assert report["runs"][6]["optimizations"]["fast_fn"]["optimized_calls"] == 0
    assert "disabled" in report["runs"][5]["optimizations"]["slow_fn"]  # its last run
    charts = figures(report)
    assert set(charts) == set(CHART_IDS)


def test_html_page_in_headless_chromium(history_state, tmp_path):
    if find_chromium() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install "
                        "chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    page = tmp_path / "report.html"
    assert main(["report", "--html", str(page)]) == 0
    text = page.read_text()
    assert "<script" in text and "<script src=" not in text  # plotly embedded: works offline
    result = open_page(page.as_uri(), POINTS_PER_CHART)
    shot = artifact_dir() / "report_html.png"
    shot.write_bytes(result.screenshot)
    assert result.errors == []
    points = json.loads(result.value)
    assert set(points) == {f"chart-{c}" for c in CHART_IDS}
    assert all(n > 0 for n in points.values()), points
    assert result.screenshot.startswith(b"\x89PNG") and len(result.screenshot) > 20_000
    shutil.copy(page, artifact_dir() / "report.html")
