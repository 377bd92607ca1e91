"""Profiles: named connection settings in `$XDG_CONFIG_HOME/hpcgate/config.toml`
(default `~/.config/hpcgate/config.toml`), written by `hpcgate login`, mode 0600.

    default_profile = "default"

    [profiles.default]
    address = "gate.example.org:443"
    system = "perlmutter"
    client_id = "c-1234"
    key_file = "/home/alice/.config/hpcgate/client.pem"
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import click

DEFAULT_PROFILE = "default"
# The keys a profile may hold; anything else in the file is kept but ignored.
KEYS = ("address", "system", "token", "client_id", "key_file", "audience", "tls", "ca_file")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hpcgate" / "config.toml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The whole file ({} when there is none); a malformed file is a usage error."""
    path = path or config_path()
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, OSError) as e:
        raise click.ClickException(f"cannot read {path}: {e}") from None


def active_name(requested: str | None, config: dict[str, Any]) -> str:
    default = config.get("default_profile")
    return requested or (default if isinstance(default, str) else DEFAULT_PROFILE)


def load_profile(requested: str | None) -> dict[str, Any]:
    """The settings of the requested profile (--profile / $HPCGATE_PROFILE), else of the
    default one; {} when no profile was asked for and none exists."""
    path = config_path()
    config = load_config(path)
    name = active_name(requested, config)
    profiles = config.get("profiles", {})
    profile = profiles.get(name) if isinstance(profiles, dict) else None
    if profile is None:
        if requested:
            raise click.UsageError(f"no profile {requested!r} in {path} (see `hpcgate login`)")
        return {}
    if not isinstance(profile, dict):
        raise click.ClickException(f"{path}: profiles.{name} is not a table")
    return {k: v for k, v in profile.items() if k in KEYS}


def save_profile(name: str, values: dict[str, Any], *, make_default: bool) -> Path:
    """Store (replace) one profile, keeping the others; the file is written 0600."""
    path = config_path()
    config = load_config(path)
    profiles = config.setdefault("profiles", {})
    profiles[name] = {k: v for k, v in values.items() if v not in (None, "")}
    if make_default or "default_profile" not in config:
        config["default_profile"] = name
    write_private(path, dump_toml(config))
    return path


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a file only its owner can read (it may hold a token)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def dump_toml(config: dict[str, Any]) -> str:
    """TOML for a two-level document: scalars at the top, then one table per nested dict."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for key, table in config.items():
        if isinstance(table, dict):
            lines += _tables([key], table)
    return "\n".join(lines).lstrip("\n") + "\n"


def _tables(prefix: list[str], table: dict[str, Any]) -> list[str]:
    scalars = [f"{_key(k)} = {_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    header = "[" + ".".join(_key(p) for p in prefix) + "]"
    nested = any(isinstance(v, dict) for v in table.values())
    lines = ["", header, *scalars] if scalars or not nested else []  # [a] is implied by [a.b]
    for key, sub in table.items():
        if isinstance(sub, dict):
            lines += _tables([*prefix, key], sub)
    return lines


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return _string(str(value))


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
