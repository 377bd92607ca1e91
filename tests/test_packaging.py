"""Packaging promises: every package ships, and the client install stays light."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SERVER_ONLY = ("grpcio-health-checking", "grpcio-reflection", "aiofiles", "pyslurm")


def test_every_package_directory_is_listed() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(root).parts)
        for root in (ROOT / "client", ROOT / "server")
        for init in root.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found == listed


def test_client_install_does_not_pull_server_dependencies() -> None:
    base = PYPROJECT["project"]["dependencies"]
    assert not [d for d in base if d.startswith(SERVER_ONLY)]
    assert any(
        d.startswith("grpcio-health-checking")
        for d in PYPROJECT["project"]["optional-dependencies"]["server"]
    )
    assert set(PYPROJECT["project"]["optional-dependencies"]) >= {"server", "pyslurm", "dev"}
    assert PYPROJECT["project"]["scripts"] == {
        "hpcgate": "hpcgate.client.cli:main",
        "hpcgate-server": "hpcgate.server.cli:main",
    }
    assert not (ROOT / "client" / "hpcgate" / "__init__.py").exists()  # namespace package
    assert not (ROOT / "server" / "hpcgate" / "__init__.py").exists()
