"""`make run` as root prints a token for the demo user alice as well as root's, so the
README's first steps (submit, watch, download as alice) work as written."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import jwt

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "run-tokens.sh"


def run_tokens(venv_bin: Path, user: str) -> str:
    result = subprocess.run(
        ["bash", str(SCRIPT), str(venv_bin), "127.0.0.1:50051", user],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return result.stdout


def exported(output: str, variable: str) -> dict[str, object]:
    match = re.search(rf"export {variable}=(\S+)", output)
    assert match is not None, f"no {variable} in:\n{output}"
    claims: dict[str, object] = jwt.decode(match.group(1), options={"verify_signature": False})
    return claims


def test_root_gets_a_token_for_alice_too(venv_bin: Path) -> None:
    output = run_tokens(venv_bin, "root")
    assert exported(output, "HPCGATE_ROOT_TOKEN")["sub"] == "root"
    alice = exported(output, "HPCGATE_TOKEN")
    assert alice["sub"] == "alice"
    assert set(str(alice["scope"]).split()) == {"read", "write", "execute"}
    assert "HPCGATE_SYSTEM=local" in output and "hpcgate whoami" in output


def test_another_user_gets_only_their_own(venv_bin: Path) -> None:
    output = run_tokens(venv_bin, "bob")
    assert exported(output, "HPCGATE_TOKEN")["sub"] == "bob"
    assert "HPCGATE_ROOT_TOKEN" not in output and "alice" not in output
