"""Where the server keeps its state and looks for its configuration by default.

Every `hpcgate-server` subcommand uses the same rules, so `hpcgate-server outages add`
finds the database that `hpcgate-server serve` uses without any flags.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_ENV = "HPCGATE_CONFIG"
STATE_DIR_ENV = "HPCGATE_STATE_DIR"
SYSTEM_CONFIG = Path("/etc/hpcgate/hpcgate.toml")


def default_state_dir() -> Path:
    """$HPCGATE_STATE_DIR, else /var/lib/hpcgate for root, else $XDG_STATE_HOME/hpcgate."""
    if env := os.environ.get(STATE_DIR_ENV):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/hpcgate")
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "hpcgate"


def default_config_path() -> Path | None:
    """$HPCGATE_CONFIG, else /etc/hpcgate/hpcgate.toml if present, else None (built-in defaults)."""
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    if SYSTEM_CONFIG.is_file():
        return SYSTEM_CONFIG
    return None
