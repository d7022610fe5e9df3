"""``freqtrade-opt init``: copy the user_data template (config snippet, example strategy)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def template_dir() -> Path:
    """The template shipped in the wheel, or the checkout's ``user_data_template/``."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_user_data_template", package.parent / "user_data_template"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the user_data template is missing from this installation")


def copy_template(userdir: Path) -> tuple[list[Path], list[Path]]:
    """Copy every template file under `userdir`; never overwrite. Returns (copied, kept)."""
    source = template_dir()
    copied: list[Path] = []
    kept: list[Path] = []
    files = sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        destination = userdir / path.relative_to(source)
        if destination.exists():
            kept.append(destination)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        copied.append(destination)
    return copied, kept


def cmd_init(args: argparse.Namespace) -> int:
    copied, kept = copy_template(Path(args.userdir))
    for path in copied:
        print(f"created  {path}")
    for path in kept:
        print(f"kept     {path} (exists, not overwritten)")
    print("Merge freqtrade_opt.config.json's 'freqtrade_opt' section into your config.json, "
          "then run `freqtrade-opt status --config <your config>`.")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("init", help="copy the user_data template (never overwrites)")
    parser.add_argument("--userdir", default="user_data", help="target directory (user_data)")
    parser.set_defaults(func=cmd_init)
