"""Where ndr-sweeper keeps its files: XDG base directories. Pure (no file system writes)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "ndr-sweeper"
CONFIG_ENV = "NDR_SWEEPER_CONFIG"


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def _xdg(env: Mapping[str, str] | None, var: str, fallback: str) -> Path:
    env = os.environ if env is None else env
    value = env.get(var, "")
    # The XDG spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return _home(env) / fallback


def config_home(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME``, or ``~/.config``."""
    return _xdg(env, "XDG_CONFIG_HOME", ".config")


def state_home(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME``, or ``~/.local/state``."""
    return _xdg(env, "XDG_STATE_HOME", ".local/state")


def data_home(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME``, or ``~/.local/share``."""
    return _xdg(env, "XDG_DATA_HOME", ".local/share")


def default_demo_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/ndr-sweeper/demo``: where ``ndr-sweeper demo`` puts its sample."""
    return data_home(env) / APP_NAME / "demo"


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/ndr-sweeper/config.toml``."""
    return config_home(env) / APP_NAME / "config.toml"


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/ndr-sweeper``."""
    return state_home(env) / APP_NAME


def resolve_config_path(
    path: Path | str | None, env: Mapping[str, str] | None = None
) -> tuple[Path, str]:
    """The config file to read and where that choice came from: "cli", "env" or "default"."""
    env = os.environ if env is None else env
    if path is not None and str(path) != "":
        return Path(path).expanduser(), "cli"
    from_env = env.get(CONFIG_ENV, "")
    if from_env:
        return Path(from_env).expanduser(), "env"
    return default_config_path(env), "default"
