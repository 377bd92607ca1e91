"""Fails when a Slurm command is named outside the scheduler port (server/.../slurm/).

Slurm command lines and the parsing of their output live only in `slurm/`. This looks
at every string literal (f-string parts included) of the server's other modules and
reports one that names a Slurm command as a command line would: its first word, without
any directory, is a Slurm command, alone or followed by an option or a subcommand
("sbatch", "/opt/slurm/bin/squeue", "squeue -h ...", "scontrol show config"). Docstrings
and comments are prose and do not count, and neither do messages that mention a command
("running sbatch", "sbatch gave no job id"). Usage:

    python scripts/check_slurm_boundary.py [SERVER_PACKAGE_DIR]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

COMMANDS = frozenset({
    "sbatch", "scancel", "squeue", "sacct", "scontrol", "sinfo", "sacctmgr", "sshare",
    "sreport", "srun", "salloc", "sprio", "sstat", "sdiag", "strigger", "sbcast",
})  # fmt: skip
# What may follow a command's name on a command line besides options (scontrol's,
# sacctmgr's and sreport's subcommands).
SUBCOMMANDS = frozenset({
    "show", "list", "update", "ping", "create", "add", "modify", "delete", "remove", "hold",
    "release", "requeue", "suspend", "resume", "reconfigure", "cluster", "job", "user",
})  # fmt: skip
DEFAULT = Path(__file__).resolve().parents[1] / "server" / "hpcgate" / "server"


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def names_a_command(text: str) -> bool:
    words = text.split()
    if not words or words[0].rpartition("/")[2] not in COMMANDS:
        return False
    return len(words) == 1 or words[1].startswith("-") or words[1] in SUBCOMMANDS


def offences(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    skip = docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in skip and names_a_command(node.value)
    ]  # fmt: skip


def main() -> int:
    package = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    bad = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] == "slurm":
            continue
        bad += [f"{relative}:{line}: {value!r}" for line, value in offences(path)]
    for line in bad:
        print(f"{line}: a Slurm command outside slurm/ (build it in the scheduler port)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
