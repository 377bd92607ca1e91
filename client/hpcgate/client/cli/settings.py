"""The global options (flags, else environment variables) and how they combine with a
profile into what to connect to: address, credentials, TLS, the system."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcgate.client.auth import ClientCredentials
from hpcgate.client.channel import DEFAULT_ADDRESS
from hpcgate.client.cli.profile import load_profile
from hpcgate.client.core import Credentials


@dataclass
class Settings:
    """The global options as given (flags, else environment variables)."""

    address: str | None = None
    token: str | None = None
    client_id: str | None = None
    key_file: str | None = None
    audience: str | None = None
    tls: bool = False
    ca_file: str | None = None
    profile: str | None = None
    system: str | None = None
    timeout: float = 60.0
    json: bool = False
    verbose: int = 0
    use_profile: bool = True  # False for `login`, which makes one


@dataclass
class Connection:
    """Settings with the profile applied: flags and environment first, then the profile."""

    address: str
    credentials: Credentials | None
    tls: bool | None
    ca_file: str | None
    system: str | None
    explicit_system: bool  # --system / $HPCGATE_SYSTEM (not just the profile's default)
    describe: str  # for -v


def connection(settings: Settings) -> Connection:
    profile = load_profile(settings.profile) if settings.use_profile else {}
    address = settings.address or profile.get("address") or DEFAULT_ADDRESS
    audience = settings.audience or profile.get("audience") or "hpcgate"
    credentials, how = _credentials(settings, audience)
    if credentials is None:
        credentials, how = _credentials(_profile_settings(profile), audience)
    ca_file = settings.ca_file or profile.get("ca_file")
    tls = True if settings.tls or profile.get("tls") else None
    system = settings.system or profile.get("system")
    return Connection(str(address), credentials, tls, ca_file, system, bool(settings.system),
                      f"{address} ({how}{', TLS' if tls or ca_file else ''})")  # fmt: skip


def _profile_settings(profile: dict[str, Any]) -> Settings:
    return Settings(token=profile.get("token"), client_id=profile.get("client_id"),
                    key_file=profile.get("key_file"))  # fmt: skip


def _credentials(settings: Settings, audience: str) -> tuple[Credentials | None, str]:
    if settings.token:
        return settings.token, "token"
    if settings.client_id and settings.key_file:
        key = Path(settings.key_file).expanduser()
        return ClientCredentials.from_files(settings.client_id, key, audience), "client key"
    return None, "no credentials"
