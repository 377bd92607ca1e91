"""Fails when a Slurm command is named outside the scheduler port (server/.../slurm/).

Slurm command lines and the parsing of their output live only in `slurm/`. This looks
at every string literal of the server's other modules (docstrings and comments are
prose and do not count) and reports one that is a Slurm command's name, alone or at the
start of a command line ("sbatch", "squeue -h ..."; a message such as "sbatch gave no job
id" is prose). Usage:

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


def offences(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    skip = docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            first, _, rest = node.value.strip().partition(" ")
            if first in COMMANDS and (not rest or rest.startswith("-")):
                found.append((node.lineno, node.value))
    return found


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
