"""The docs tell the truth about what they show: the privsep wire example speaks the
worker's real protocol, and every `hpcgate-server ...` / `hpcgate ...` command line named
in README.md and docs/*.md exists with the options it uses. (README's code blocks are run
by tests/test_readme.py.)"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from hpcgate.server.privsep.worker import OPS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
PROGRAM = re.compile(r"^(?:\.venv/bin/)?(hpcgate(?:-server)?) (.*)$")
FENCE = re.compile(r"^```\w*\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def test_the_privsep_protocol_example_uses_real_operations() -> None:
    text = (ROOT / "docs" / "privsep.md").read_text()
    block = text.split("```\n", 2)[1]
    messages = {
        line.split()[0]: json.loads(line.split(None, 1)[1].split("  +")[0])
        for line in block.splitlines()
        if line.startswith(("request", "reply"))
    }
    request = messages["request"]
    assert request["op"] in OPS
    reply = messages["reply"]
    assert reply["id"] == request["id"] and reply["ok"] is True


def test_every_worker_operation_is_documented() -> None:
    table = (ROOT / "docs" / "privsep.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)?", table, re.MULTILINE))
    names = {name for pair in documented for name in pair if name}
    assert set(OPS) <= names, f"undocumented worker operations: {set(OPS) - names}"


def code_in(text: str) -> list[str]:
    """Inline code spans and the lines of fenced blocks."""
    lines = [line for block in FENCE.findall(text) for line in block.splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", FENCE.sub("", text))


def named_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for code in code_in(doc.read_text()):
            match = PROGRAM.match(code.strip())
            if match is None:
                continue
            try:
                words = shlex.split(match.group(2).split(" #")[0].replace("\\", " "))
            except ValueError:
                continue
            found.append((f"{doc.name}: {code.strip()[:60]}", [match.group(1), *words]))
    return found


@cache
def help_of(program: str, *subcommands: str) -> str:
    done = subprocess.run([str(BIN / program), *subcommands, "--help"], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, f"{program} {' '.join(subcommands)}: {done.stderr}"
    return done.stdout


def subcommands_in(help_text: str) -> set[str]:
    """The subcommands a --help lists (argparse's {a,b} positional or click's Commands:)."""
    listed: set[str] = set()
    if "positional arguments:" in help_text:
        section = help_text.split("positional arguments:")[1].split("\n\n")[0]
        for choices in re.findall(r"^\s+\{([\w,-]+)\}", section, re.MULTILINE):
            listed |= set(choices.split(","))
    if "Commands:" in help_text:
        listed |= set(re.findall(r"^  ([\w-]+)\b", help_text.split("Commands:")[1], re.MULTILINE))
    return listed


def takes_value(help_text: str, option: str) -> bool:
    return re.search(rf"{re.escape(option)}[ =](?:[A-Z]|\{{)", help_text) is not None


@pytest.mark.parametrize(("where", "argv"), named_commands(), ids=lambda v: str(v)[:70])
def test_named_commands_exist_with_their_options(where: str, argv: list[str]) -> None:
    program, rest = argv[0], argv[1:]
    path: list[str] = []
    text = help_of(program)
    words = iter(rest)
    for word in words:  # descend through the subcommands the words name
        if word == "|":  # `serve | token | ...`: alternatives of the last level
            alternative = next(words)
            assert alternative in subcommands_in(help_of(program, *path[:-1])), where
            continue
        if word.startswith("-"):
            assert word.split("=")[0] in text, f"{where}: {program} {' '.join(path)}: {word}"
            if "=" not in word and takes_value(text, word):
                next(words, None)
            continue
        choices = subcommands_in(text)
        if not choices or word.isupper():  # arguments, or a placeholder such as COMMAND
            break
        assert word in choices, f"{where}: {program} {' '.join(path)} has no command {word!r}"
        path.append(word)
        text = help_of(program, *path)


def test_client_reference_examples_compile_and_name_real_methods() -> None:
    """docs/client.md's Python examples compile (top-level await allowed) and every
    `client.<area>.<method>`, `job.<attr>` and `task.<attr>` they use exists."""
    import ast

    from hpcgate.client.jobs import Job
    from hpcgate.client.tasks import Task
    from hpcgate.v1 import compute_pb2, tasks_pb2

    text = (ROOT / "docs" / "client.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 8
    for block in blocks:
        compile(block, "docs/client.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    areas = {"jobs", "files", "tasks", "storage", "status", "account", "reservations"}
    prose = text  # signatures in the prose name methods too
    for area, method in set(re.findall(r"(?<!hpcgate\.)\b(?:client|hpc)\.(\w+)\.(\w+)\(", prose)):
        assert area in areas, f"docs/client.md: no area {area!r}"
        owner = {"jobs": "Jobs", "files": "Files", "tasks": "Tasks", "storage": "Storage",
                 "status": "Status", "account": "Account",
                 "reservations": "Reservations"}[area]  # fmt: skip
        module = {"Jobs": "jobs", "Files": "files", "Tasks": "tasks", "Storage": "tasks",
                  "Status": "status", "Account": "account",
                  "Reservations": "reservations"}[owner]  # fmt: skip
        cls = getattr(__import__(f"hpcgate.client.{module}", fromlist=[owner]), owner)
        assert hasattr(cls, method), f"docs/client.md: {area}.{method} does not exist"
    handles = {
        "job": Job(None, compute_pb2.Job()),  # type: ignore[arg-type]
        "task": Task(None, tasks_pb2.Task()),  # type: ignore[arg-type]
    }
    for name, handle in handles.items():
        for attr in set(re.findall(rf"\b{name}\.(\w+)", prose)) - {"sh"}:
            assert hasattr(handle, attr), f"docs/client.md: {name}.{attr} does not exist"
