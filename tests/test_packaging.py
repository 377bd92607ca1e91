"""Packaging promises: every package ships, and the client install stays light."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from conftest import require

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "server" / "hpcgate" / "server" / "web" / "static"
# Packages of data files only (no __init__.py): the status page.
DATA_PACKAGES = {"hpcgate.server.web.static"}
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
    assert found | DATA_PACKAGES == listed


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


def test_wheel_has_every_module_and_the_status_page(tmp_path: Path) -> None:
    """What an installed server gets, not only an editable checkout: setuptools leaves out
    a data directory missing from `packages`, with only a warning."""
    require((STATIC / "status.js").is_file(), "the status page's script is built by make web")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path),
         str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "would be ignored" not in built.stderr, built.stderr
    (wheel,) = tmp_path.glob("hpcgate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    modules = {
        path.relative_to(root).as_posix()
        for root in (ROOT / "client", ROOT / "server")
        for path in (root / "hpcgate").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert modules - names == set()
    page = {
        f"hpcgate/server/web/static/{name}" for name in ("index.html", "status.css", "status.js")
    }
    assert page - names == set()
