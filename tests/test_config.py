"""Configuration loading: defaults, the documented example, and clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hpcgate.server import config


def test_defaults_serve_the_local_cluster_on_loopback() -> None:
    c = config.parse({})
    assert c.server.listen == "127.0.0.1:50051" and c.server.listens_on_loopback_only
    assert [s.id for s in c.systems] == ["local"]
    assert c.systems[0].slurm.adapter == "cli"


def test_documented_example_is_valid_and_equals_the_defaults() -> None:
    example = config.load(config.EXAMPLE_CONFIG)
    defaults = config.parse({})
    assert example.systems == defaults.systems
    assert example.status == defaults.status and example.limits == defaults.limits
    assert example.server == defaults.server
    assert example.rate_limits == defaults.rate_limits


def test_every_key_of_the_example_is_documented() -> None:
    text = config.EXAMPLE_CONFIG.read_text()
    lines = text.splitlines()
    seen: set[str] = set()
    for i, line in enumerate(lines):
        key = line.lstrip("# ").split("=", 1)[0].strip()
        if "=" in line and not line.startswith("#") and key not in seen:
            seen.add(key)  # the first occurrence of each key carries its comment
            assert lines[i - 1].startswith("#"), f"undocumented key: {line}"
    assert {"listen", "probe_interval", "adapter", "path", "kind"} <= seen
    assert tomllib.loads(text)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nlisten = 5", "server.listen: expected a string"),
        ("[server]\nlisten = 'nowhere'", "server.listen"),
        ("[server]\nlistn = 'x:1'", "unknown key(s): server.listn"),
        ("[status]\nprobe_interval = -1", "status.probe_interval: must be at least"),
        ("[[systems]]\nid = 'Bad Id'", "systems[0].id"),
        ("[[systems]]\nid = 'a'\n[systems.slurm]\nadapter = 'rest'", "systems[0].slurm.adapter"),
        ("[[systems]]\nid = 'a'\n[[systems.filesystems]]\nname = 'h'\npath = 'rel'", "path"),
        ("[[systems]]\nid = 'a'\n[[systems]]\nid = 'a'", "ids must be unique"),
        ("[server.tls]\ncert_file = 'c'", "both cert_file and key_file"),
        ("[state]\nbackend = 'mysql'", "state.backend: must be one of sqlite, postgresql"),
        ("[state]\nbackend = 'postgresql'", "state.dsn: required"),
        ("[state]\ndsn = 'postgresql://x/y'", "state.dsn: only used with"),
        ("[state]\npool_size = 1", "state.pool_size: must be at least 2"),
        ("[tasks]\nlease_seconds = 0.5", "tasks.lease_seconds: must be at least 1.0"),
        ("[server]\nmax_connection_age = -1", "server.max_connection_age: must be at least"),
        ("[server]\nmax_pending_requests = 0", "server.max_pending_requests: must be at least 1"),
        ("[limits]\nmax_metadata_bytes = 1024", "limits.max_metadata_bytes: must be at least 4096"),
        ("[server]\nmin_client_ping_interval = 0.1", "server.min_client_ping_interval: must"),
        ("[rate_limits.per_user]\nreads_per_second = -1", "rate_limits.per_user.reads_per_second"),
        ("[rate_limits.per_client]\nreads_burst = 0", "rate_limits.per_client.reads_burst"),
        ("[rate_limits]\nmax_streams = 'many'", "rate_limits.max_streams: expected an integer"),
        ("[rate_limits.per_address]\nread_burst = 1", "unknown key(s): rate_limits.per_address"),
    ],
)
def test_errors_name_the_key(toml: str, message: str) -> None:
    with pytest.raises(config.ConfigError) as e:
        config.parse(tomllib.loads(toml))
    assert message in str(e.value)


def test_listening_elsewhere_is_not_loopback() -> None:
    c = config.parse({"server": {"listen": "0.0.0.0:50051"}})
    assert not c.server.listens_on_loopback_only
    assert config.parse({"server": {"listen": "[::1]:1"}}).server.listens_on_loopback_only


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(bad)


def test_cluster_mode_is_postgresql_with_a_dsn() -> None:
    parsed = config.parse(
        tomllib.loads("[state]\nbackend = 'postgresql'\ndsn = 'postgresql://h/db'\n")
    )
    assert parsed.state.clustered and parsed.state.dsn == "postgresql://h/db"
    assert not config.parse({}).state.clustered  # the embedded default stays SQLite
