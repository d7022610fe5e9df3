#!/usr/bin/env python
"""Fingerprint the optimization targets across Freqtrade releases.

For every Freqtrade release in a version range (default 2025.1 .. 2026.9, patch releases
included) this downloads the wheel (``pip download --no-deps --only-binary=:all:``) into a cache
directory, reads each target module's source straight out of the wheel zip (nothing is
installed or imported) and fingerprints the target with `registry.find_definition` +
`registry.fingerprint_source`.

Output: a table of version x target -> fingerprint, or ``absent`` (nowhere in the wheel) or
``moved:<module>`` (the qualname exists, but in another module than the target's).

    --diff     for each target, a unified diff of every differing source vs the reference one
    --check    compare the reference wheel's fingerprints with the live installed objects
    --write    regenerate freqtrade_opt_plugin/optimizations/verified.py (implies --check;
               refuses to write when the check fails)

Only versions whose fingerprint at the target's own module path equals the reference
version's (the one the replacements were written and tested against) are written as verified.

Run with the project venv:  .venv/bin/python scripts/collect_fingerprints.py --diff --write
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from freqtrade_opt_plugin.registry import (  # noqa: E402
    find_definition,
    fingerprint,
    fingerprint_source,
)


# Candidates (no replacement yet; fingerprints recorded ahead of time).
CANDIDATE_TARGETS: tuple[str, ...] = (
    "freqtrade.optimize.backtesting:Backtesting.time_pair_generator",
    "freqtrade.optimize.backtesting:Backtesting._time_pair_generator_det",
    "freqtrade.optimize.backtesting:Backtesting.load_bt_data",
)


def builtin_targets() -> tuple[str, ...]:
    """The targets of the registered built-in optimizations (a new one is picked up here)."""
    from freqtrade_opt_plugin.optimizations import freqtrade_opt_register_optimizations

    return tuple(dict.fromkeys(opt.target for opt in freqtrade_opt_register_optimizations()))


TARGETS: tuple[str, ...] = tuple(dict.fromkeys((*builtin_targets(), *CANDIDATE_TARGETS)))

DEFAULT_CACHE = Path("/tmp/ft-wheels")
DEFAULT_OUTPUT = ROOT / "freqtrade_opt_plugin" / "optimizations" / "verified.py"
DEFAULT_MIN = "2025.1"
DEFAULT_MAX = "2026.9"
DEFAULT_REFERENCE = "2026.9"

ABSENT = "absent"
MOVED_PREFIX = "moved:"


@dataclass
class Found:
    """Where (if anywhere) one target was found in one release."""

    status: str  # a fingerprint, ABSENT, "moved:<module>" or "error:<text>"
    module: str | None = None  # module actually holding the definition
    source: str | None = None  # the definition's source (find_definition output)

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint at the target's own module path, else None."""
        if self.status == ABSENT or ":" in self.status:
            return None
        return self.status


# --------------------------------------------------------------------------- versions / wheels


def list_versions(low: str, high: str) -> list[str]:
    """Released Freqtrade versions in [low, high], oldest first (via `pip index versions`)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "freqtrade"],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Available versions:\s*(.+)", proc.stdout)
    if proc.returncode != 0 or not match:
        raise SystemExit(
            f"`pip index versions freqtrade` failed (rc={proc.returncode}):\n{proc.stderr}"
        )
    lo, hi = Version(low), Version(high)
    found = []
    for text in match.group(1).split(","):
        text = text.strip()
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if lo <= version <= hi and not version.is_prerelease:
            found.append(text)
    return sorted(found, key=Version)


def cached_wheel(cache: Path, version: str) -> Path | None:
    hits = sorted(cache.glob(f"freqtrade-{version}-*.whl"))
    return hits[0] if hits else None


def download(cache: Path, version: str) -> tuple[Path | None, float, str]:
    """The wheel for `version` (downloaded unless cached), seconds spent, pip's error text."""
    wheel = cached_wheel(cache, version)
    if wheel:
        return wheel, 0.0, ""
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(cache),
            f"freqtrade=={version}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - start
    wheel = cached_wheel(cache, version)
    return wheel, elapsed, "" if wheel else (proc.stderr.strip() or proc.stdout.strip())


# --------------------------------------------------------------------------- fingerprints


def module_paths(module: str) -> tuple[str, str]:
    base = module.replace(".", "/")
    return f"{base}.py", f"{base}/__init__.py"


def path_to_module(path: str) -> str:
    path = path.removesuffix(".py").removesuffix("/__init__")
    return path.replace("/", ".")


class WheelSource:
    """Read-only access to the freqtrade/*.py sources inside one wheel."""

    def __init__(self, wheel: Path) -> None:
        self._zip = zipfile.ZipFile(wheel)
        self._names = {n for n in self._zip.namelist() if n.endswith(".py")}
        self._cache: dict[str, str] = {}

    def read(self, path: str) -> str | None:
        if path not in self._names:
            return None
        if path not in self._cache:
            self._cache[path] = self._zip.read(path).decode("utf-8")
        return self._cache[path]

    def module_source(self, module: str) -> str | None:
        for path in module_paths(module):
            text = self.read(path)
            if text is not None:
                return text
        return None

    def search(self, qualname: str, skip: str) -> list[str]:
        """Modules (other than `skip`) that define `qualname`."""
        name = qualname.rsplit(".", 1)[-1]
        needle = re.compile(rf"^\s*(async\s+)?def\s+{re.escape(name)}\b", re.MULTILINE)
        hits = []
        for path in sorted(self._names):
            if not path.startswith("freqtrade/"):
                continue
            module = path_to_module(path)
            if module == skip:
                continue
            text = self.read(path)
            if text is None or not needle.search(text):
                continue
            try:
                if find_definition(text, qualname) is not None:
                    hits.append(module)
            except SyntaxError:
                continue
        return hits


def locate(wheel: WheelSource, target: str) -> Found:
    module, _, qualname = target.partition(":")
    text = wheel.module_source(module)
    if text is not None:
        try:
            source = find_definition(text, qualname)
        except SyntaxError as exc:
            return Found(f"error:{exc.__class__.__name__}")
        if source is not None:
            return Found(fingerprint_source(source), module, source)
    elsewhere = wheel.search(qualname, skip=module)
    if not elsewhere:
        return Found(ABSENT)
    other = elsewhere[0]
    source = find_definition(wheel.module_source(other) or "", qualname)
    status = MOVED_PREFIX + ",".join(elsewhere)
    return Found(status, other, source)


def live_fingerprint(target: str) -> str:
    module, _, qualname = target.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return fingerprint(obj)


def live_file_fingerprint(target: str) -> str | None:
    """find_definition-based fingerprint of the installed module file."""
    module, _, qualname = target.partition(":")
    source = find_definition(inspect.getsource(importlib.import_module(module)), qualname)
    return fingerprint_source(source) if source is not None else None


# --------------------------------------------------------------------------- output


def short(target: str) -> str:
    return target.partition(":")[2].rpartition(".")[2]


def print_table(versions: list[str], results: dict[str, dict[str, Found]], ref: str) -> None:
    headers = ["version"] + [short(t) for t in TARGETS]
    rows = []
    for version in versions:
        row = [version]
        for target in TARGETS:
            found = results[version][target]
            cell = found.status
            if found.fingerprint and found.fingerprint == results[ref][target].fingerprint:
                cell += " ="
            row.append(cell)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [headers]) for i in range(len(headers))]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"\n'=' : same fingerprint as {ref} (verified).  Columns:")
    for target in TARGETS:
        print(f"  {short(target):28} {target}")


def print_diffs(versions: list[str], results: dict[str, dict[str, Found]], ref: str) -> None:
    for target in TARGETS:
        reference = results[ref][target]
        if reference.source is None:
            print(f"\n### {target}: not found in {ref}, nothing to diff against")
            continue
        groups: dict[str, list[str]] = {}
        for version in versions:
            found = results[version][target]
            if found.source is None:
                continue
            key = fingerprint_source(found.source)
            if key != fingerprint_source(reference.source) or found.fingerprint is None:
                groups.setdefault(key, []).append(version)
        print(f"\n### {target}")
        if not groups:
            print(f"(every version where it exists matches {ref})")
            continue
        for key, group in groups.items():
            found = results[group[0]][target]
            where = "" if found.module == target.partition(":")[0] else f" (in {found.module})"
            label = ", ".join(group)
            print(f"--- versions {label}{where}: fingerprint {key}")
            diff = difflib.unified_diff(
                ((found.source or "") + "\n").splitlines(keepends=True),
                (reference.source + "\n").splitlines(keepends=True),
                fromfile=f"{group[0]}:{found.module}",
                tofile=f"{ref}:{target.partition(':')[0]}",
            )
            text = "".join(diff)
            if not text:
                text = "(identical text; fingerprints differ only through the module location)\n"
            print(text, end="" if text.endswith("\n") else "\n")


def check_live(results: dict[str, dict[str, Found]], ref: str) -> bool:
    import freqtrade

    installed = freqtrade.__version__
    print(f"\nSanity check: installed freqtrade {installed} vs the {ref} wheel")
    if installed != ref:
        print(f"  installed version is not {ref}: skipped")
        return False
    ok = True
    for target in TARGETS:
        wheel_fp = results[ref][target].fingerprint
        live = live_fingerprint(target)
        file_fp = live_file_fingerprint(target)
        same = wheel_fp == live == file_fp
        ok &= same
        mark = "ok" if same else "MISMATCH"
        print(f"  {mark:8} {short(target):28} wheel={wheel_fp} live={live} file={file_fp}")
    return ok


def render_module(versions: list[str], results: dict[str, dict[str, Found]], ref: str) -> str:
    lines = [
        '"""Freqtrade versions whose target source matches the one the replacements were',
        f"verified against (Freqtrade {ref}).",
        "",
        "`VERIFIED` maps each target (``module:qualname``) to {version: fingerprint}, where the",
        "fingerprint is `registry.fingerprint_source` of the target's definition in that release.",
        f"Only releases whose fingerprint equals {ref}'s are listed: there the original is the",
        "code the replacement was written and tested against. A fingerprint covers the function's",
        "own source only, not the code it calls. A release where the function lived in another",
        "module (or did not exist) is excluded for that target: its path does not resolve there.",
        "",
        "Generated by ``scripts/collect_fingerprints.py --write`` (do not edit by hand), which",
        "downloads every release's wheel, reads the sources from the zip and checks that the",
        f"{ref} wheel's fingerprints equal those of the live installed objects.",
        f"Scanned releases: {versions[0]} .. {versions[-1]} ({len(versions)} releases).",
        '"""',
        "",
        "VERIFIED: dict[str, dict[str, str]] = {",
    ]
    for target in TARGETS:
        ref_fp = results[ref][target].fingerprint
        excluded: dict[str, list[str]] = {}
        verified = []
        for version in versions:
            found = results[version][target]
            if ref_fp is not None and found.fingerprint == ref_fp:
                verified.append(version)
                continue
            if found.status == ABSENT:
                reason = "absent"
            elif found.status.startswith(MOVED_PREFIX):
                reason = f"defined in {found.status[len(MOVED_PREFIX) :]}"
            elif found.status.startswith("error:"):
                reason = found.status
            else:
                reason = "different source"
            excluded.setdefault(reason, []).append(version)
        lines.append(f'    "{target}": {{')
        for reason, group in excluded.items():
            lines.extend(_wrap_comment(f"excluded ({reason}): {', '.join(group)}", indent=8))
        for version in verified:
            lines.append(f'        "{version}": "{ref_fp}",')
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _wrap_comment(text: str, indent: int, width: int = 99) -> Iterable[str]:
    prefix = " " * indent + "# "
    words, current = text.split(" "), ""
    for word in words:
        if current and len(prefix) + len(current) + 1 + len(word) > width:
            yield prefix + current
            current = "  " + word
        else:
            current = f"{current} {word}" if current else word
    if current:
        yield prefix + current


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--min", default=DEFAULT_MIN, help="oldest release (inclusive)")
    parser.add_argument("--max", default=DEFAULT_MAX, help="newest release (inclusive)")
    parser.add_argument("--versions", nargs="+", help="explicit releases instead of the range")
    parser.add_argument(
        "--reference",
        default=DEFAULT_REFERENCE,
        help="release the replacements were verified against",
    )
    parser.add_argument("--jobs", type=int, default=4, help="parallel downloads")
    parser.add_argument("--diff", action="store_true", help="print diffs vs the reference")
    parser.add_argument("--check", action="store_true", help="compare with installed objects")
    parser.add_argument("--write", action="store_true", help="regenerate verified.py")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    versions = args.versions or list_versions(args.min, args.max)
    if args.reference not in versions:
        versions.append(args.reference)
    versions.sort(key=Version)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"{len(versions)} releases: {', '.join(versions)}\n")

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        downloads = pool.map(lambda v: download(args.cache_dir, v), versions)
        fetched = dict(zip(versions, downloads, strict=True))
    wall = time.monotonic() - start

    failed = {v: err for v, (wheel, _, err) in fetched.items() if wheel is None}
    for version, err in failed.items():
        print(f"!! no wheel for {version}: {err.splitlines()[-1] if err else '?'}")
    wheels = {v: w for v, (w, _, _) in fetched.items() if w is not None}
    new = [v for v, (w, secs, _) in fetched.items() if w is not None and secs > 0]
    total = sum(w.stat().st_size for w in wheels.values())
    new_bytes = sum(wheels[v].stat().st_size for v in new)
    print(
        f"wheels: {len(wheels)} in {args.cache_dir} ({total / 1e6:.1f} MB total); "
        f"downloaded now: {len(new)} ({new_bytes / 1e6:.1f} MB) in {wall:.1f}s wall\n"
    )
    versions = [v for v in versions if v in wheels]
    if args.reference not in wheels:
        print(f"reference release {args.reference} unavailable")
        return 2

    results: dict[str, dict[str, Found]] = {}
    for version in versions:
        source = WheelSource(wheels[version])
        results[version] = {target: locate(source, target) for target in TARGETS}

    print_table(versions, results, args.reference)
    if args.diff:
        print_diffs(versions, results, args.reference)

    ok = True
    if args.check or args.write:
        ok = check_live(results, args.reference)
    if args.write:
        if not ok:
            print(f"\nnot writing {args.output}: the sanity check failed")
            return 1
        args.output.write_text(render_module(versions, results, args.reference))
        print(f"\nwrote {args.output}")
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
