"""Where the plugin keeps state on disk, and the check that keeps it private."""

from __future__ import annotations

import os
import stat
from pathlib import Path


STATE_DIR_ENV = "FREQTRADE_OPT_STATE_DIR"
USER_DATA_ENV = "_FREQTRADE_OPT_USER_DATA_DIR"  # set once the user's config is seen (for workers)


class UnsafeDirectoryError(RuntimeError):
    """A state directory that other users could write to (and so plant data in)."""


def state_dir() -> Path:
    """The plugin's state directory: $FREQTRADE_OPT_STATE_DIR, else <user_data>/freqtrade_opt."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    user_data = os.environ.get(USER_DATA_ENV) or "user_data"
    return Path(user_data).expanduser() / "freqtrade_opt"


def remember_user_data_dir(path: str | os.PathLike) -> None:
    """Record the user_data directory from the user's config (inherited by worker processes)."""
    os.environ[USER_DATA_ENV] = str(Path(path).expanduser().resolve())


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (mode 0700) or accept it if only its owner can write it.

    Raises UnsafeDirectoryError naming the directory and its mode when group or others may write
    to it, or when it belongs to another user; OSError when it cannot be created.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeDirectoryError(
            f"{path} is writable by group or others (mode {stat.filemode(info.st_mode)}); "
            f"refusing to use it. Run: chmod go-w {path}"
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise UnsafeDirectoryError(
            f"{path} belongs to another user (uid {info.st_uid}); refusing to use it"
        )
    return path
