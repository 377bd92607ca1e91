"""Generate the Python stubs in client/hpcgate/v1 from proto/hpcgate/v1.

Uses grpcio-tools' bundled protoc (pinned in pyproject.toml) so that every machine
produces byte-identical output, plus mypy-protobuf for typed gRPC stubs.

    python scripts/generate.py --out client     # write the stubs
    python scripts/generate.py --check client   # exit 1 if the committed stubs are stale
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = Path("hpcgate") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generate_into(out_dir: Path) -> None:
    protos = sorted(
        str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto")
    )
    if not protos:
        sys.exit("no .proto files under proto/hpcgate/v1")
    bin_dir = Path(sys.executable).parent
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(cmd, cwd=PROTO_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:  # protoc's and the plugins' chatter only matters on failure
        sys.exit(f"protoc failed:\n{result.stdout}{result.stderr}")


def generated_files(base: Path) -> set[str]:
    pkg = base / PACKAGE_DIR
    if not pkg.is_dir():
        return set()
    return {p.name for p in pkg.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", type=Path, help="source root to write hpcgate/v1/* into")
    group.add_argument("--check", type=Path, help="source root whose stubs must be fresh")
    args = parser.parse_args()
    target: Path = (args.out or args.check).resolve()

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate_into(fresh)
        new = generated_files(fresh)
        if args.check:
            old = generated_files(target)
            stale = sorted(
                name
                for name in new | old
                if name not in new
                or name not in old
                or not filecmp.cmp(
                    fresh / PACKAGE_DIR / name, target / PACKAGE_DIR / name, shallow=False
                )
            )
            if stale:
                print(
                    "generated stubs are stale; run `make generate` and commit:", *stale, sep="\n  "
                )
                return 1
            print(f"generated stubs are fresh ({len(new)} files)")
            return 0
        dest = target / PACKAGE_DIR
        dest.mkdir(parents=True, exist_ok=True)
        for name in generated_files(target) - new:
            (dest / name).unlink()
        for name in sorted(new):
            shutil.copyfile(fresh / PACKAGE_DIR / name, dest / name)
        print(f"wrote {len(new)} files to {dest}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
