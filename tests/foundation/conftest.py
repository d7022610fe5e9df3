import json
import os
import subprocess
import sys
import textwrap

import pytest


def _clean_env(**overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FREQTRADE_OPT_",
                                                                    "_FREQTRADE_OPT_"))}
    env.update({k: str(v) for k, v in overrides.items()})
    return env


@pytest.fixture
def run_python(tmp_path):
    """Run code in a fresh interpreter (auto-load as a user gets it); returns its last JSON line."""

    def run(code: str, **env):
        env.setdefault("FREQTRADE_OPT_STATE_DIR", str(tmp_path / "state"))
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                              text=True, env=_clean_env(**env), cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr

    return run


@pytest.fixture
def plugin_site(tmp_path):
    """A site directory for third-party plugins: `add(package, source, entry_point)` writes
    ``package/__init__.py`` and a ``.dist-info`` whose ``freqtrade_opt`` entry point names it;
    put the returned directory on PYTHONPATH of `run_python`."""
    site = tmp_path / "site"
    site.mkdir()

    def add(package: str, source: str, entry_point: str | None = None):
        (site / package).mkdir()
        (site / package / "__init__.py").write_text(textwrap.dedent(source))
        dist = package.replace("_", "-")
        info = site / f"{package}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            f"[freqtrade_opt]\n{entry_point or package} = {package}\n")
        return site

    return add
