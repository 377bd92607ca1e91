"""Every code block of the README, executed as a reader would use it.

Shell blocks run in order in one bash session (`set -euo pipefail`) against a real server
and the real Slurm, from a scratch directory beside a link to the venv; Python blocks run
with the venv's interpreter at their place in that order; TOML blocks go through the
configuration parser; the architecture tree is compared with the source tree. A block
may be preceded by a marker saying how it is checked:

- `<!-- snippet: dry-run -->`: `make` commands, checked with `make -n` (they set up the
  very machine the suite runs on).
- `<!-- snippet: runs until stopped -->`: a stream that never ends by itself; it must still
  be running, having printed something, after a few seconds.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.server import config as config_module
from hpcgate.server.app import Gateway
from hpcgate.server.config import ReservationPolicy

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(
    r"^(?:<!-- snippet: (?P<mode>[a-z -]+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
MODES = {None, "dry-run", "runs until stopped"}
README_ADDRESS = "127.0.0.1:50051"
README_METRICS = "127.0.0.1:9464"  # the metrics endpoint's default address
README_HTTP = "127.0.0.1:8080"  # the HTTP listener's (Connect, gRPC-Web, status page)
STREAM_SECONDS = 3


@dataclass(frozen=True)
class Block:
    lang: str
    mode: str | None
    body: str
    line: int


def blocks(path: Path = README) -> list[Block]:
    text = path.read_text()
    return [
        Block(m["lang"], m["mode"], m["body"], text.count("\n", 0, m.start("body")) + 1)
        for m in BLOCK.finditer(text)
    ]


def test_every_block_is_of_a_kind_this_test_runs() -> None:
    found = blocks()
    assert len(found) > 15
    for block in found:
        assert block.lang in ("sh", "python", "toml", ""), f"README:{block.line}: {block.lang}"
        assert block.mode in MODES, f"README:{block.line}: unknown marker {block.mode!r}"
        if block.mode:
            assert block.lang == "sh", f"README:{block.line}: markers are for sh blocks"


def test_toml_blocks_are_valid_configuration() -> None:
    tomls = [b for b in blocks() if b.lang == "toml"]
    assert tomls
    for block in tomls:
        config_module.parse(tomllib.loads(block.body))  # raises with the bad key's name


def test_the_architecture_tree_names_every_package() -> None:
    (tree,) = [b for b in blocks() if b.lang == ""]
    named = [line.split()[0] for line in tree.body.splitlines() if line.strip()]
    top = ("server/", "client/", "proto/", "scripts/", "tests/", "bench/", "examples/", "docs/",
           "deploy/")  # fmt: skip
    paths = [e if e.startswith(top) else f"server/hpcgate/server/{e}" for e in named]
    for path in paths:
        assert list(ROOT.glob(path.rstrip("/"))), f"the README's architecture names {path}"
    packages = {p.parent.name for p in (ROOT / "server/hpcgate/server").glob("*/__init__.py")}
    listed = {p.rstrip("/").split("/")[-1] for p in paths}
    assert packages <= listed, f"missing from the README's architecture: {packages - listed}"


def script_for(
    block: Block, work: Path, address: str, metrics: str = README_METRICS, http: str = README_HTTP
) -> str:
    """The bash lines that run one block where the reader would (against the test
    gateway's gRPC `address` and `metrics` endpoint)."""
    body = block.body.replace(README_ADDRESS, address).replace(README_METRICS, metrics)
    body = body.replace(README_HTTP, http)
    mark = f"echo '--- README.md line {block.line}' >&2\n"
    if block.lang == "python":
        snippet = work / f"snippet-{block.line}.py"
        snippet.write_text(body)
        return f"{mark}{shlex.quote(sys.executable)} {snippet.name}\n"
    if block.mode == "dry-run":
        targets = [line.split()[1] for line in body.splitlines() if line.startswith("make ")]
        assert targets, f"README:{block.line}: a dry-run block runs make targets"
        return mark + "".join(
            f"make -s -n -C {shlex.quote(str(ROOT))} {t} >/dev/null\n" for t in targets
        )
    if block.mode == "runs until stopped":
        snippet = work / f"snippet-{block.line}.sh"
        snippet.write_text(body)
        out = f"stream-{block.line}.out"
        return (
            f"{mark}set +e\ntimeout {STREAM_SECONDS} bash -euo pipefail {snippet.name} > {out}\n"
            f"rc=$?\nset -e\n[ $rc = 124 ] && [ -s {out} ] || "
            f"{{ echo 'README.md line {block.line}: exit '$rc' before being stopped' >&2; "
            "exit 1; }\n"
        )
    return mark + body


# What the blocks make as alice (run1, run2 are the README's names): removed before and after.
MADE = [
    Path("/home/alice/run1"),
    Path("/home/alice/run2"),
    Path("/tmp/alice/run1"),
    Path("/tmp/alice/run1-staged"),
]


def remove_made(job_logs_before: set[Path]) -> None:
    job_logs = set(Path("/home/alice").glob("slurm-*.out")) - job_logs_before
    subprocess.run(["rm", "-rf", *map(str, MADE + sorted(job_logs))], check=True)


@pytest.fixture
async def readme_gateway(gateway_factory: GatewayFactory, tmp_path: Path) -> Gateway:
    """The embedded default, plus the reservation policy the README's TOML block sets."""
    config = fast_config(tmp_path)
    local = replace(
        config.systems[0],
        reservations=ReservationPolicy(accounts=("alpha",), max_nodes=1, max_duration=3600),
    )
    return await gateway_factory(replace(config, systems=(local,)))


async def test_shell_and_python_blocks_run_in_order(
    slurm_cluster: None, readme_gateway: Gateway, tmp_path: Path
) -> None:
    gateway = readme_gateway
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.executable).parents[1])
    (work / "scripts").symlink_to(ROOT / "scripts")
    address = f"127.0.0.1:{gateway.port}"
    runnable = [b for b in blocks() if b.lang in ("sh", "python")]
    metrics = f"127.0.0.1:{gateway.metrics_port}"
    http = f"127.0.0.1:{gateway.http_port}"
    lines = "".join(script_for(b, work, address, metrics, http) for b in runnable)
    script = "set -euo pipefail\nset -a\n" + lines
    (work / "readme.sh").write_text(script)
    token = bearer(gateway, "alice", ("read", "write", "execute"))[0][1].removeprefix("Bearer ")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    env |= {
        "HPCGATE_TOKEN": token,  # the line `make run` prints for alice
        "HPCGATE_ADDRESS": address,
        "HPCGATE_STATE_DIR": str(gateway.config.server.state_dir),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    job_logs_before = set(Path("/home/alice").glob("slurm-*.out"))
    remove_made(job_logs_before)
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            ["bash", "readme.sh"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
    finally:
        remove_made(job_logs_before)
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n--- stdout:\n{done.stdout[-2000:]}"
    assert "reduced 1048576 bytes" in done.stdout  # the job of the first steps ran
    assert (work / "reduced.txt").read_text() == (work / "reduced2.txt").read_text()
