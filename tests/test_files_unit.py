"""Unit tests of the pure parts of UtilitiesService: path rules, chmod modes, View slices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hpcgate.server.files import modes, paths, reading


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        (b"/", True),
        (b"/home/alice/data.h5", True),
        (b"/home/alice/\xff\xfe", True),  # not UTF-8, still a valid path
        (b"/home/alice/...", True),  # three dots is a name
        (b"home/alice", False),
        (b"/home/../etc", False),
        (b"/home/.", False),
        (b"/home//alice", False),
        (b"/home/alice/", False),
        (b"/a\0b", False),
        (b"/" + b"x" * 255, True),
        (b"/" + b"x" * 256, False),
        (b"/" + b"/".join([b"x" * 200] * 21), False),  # 4221 bytes
        (b"", False),
    ],
)
def test_path_rules(path: bytes, ok: bool) -> None:
    assert (paths.problem(path) is None) == ok


def test_checked_prefers_raw_bytes_and_round_trips_them() -> None:
    from hpcgate.server.api.errors import FieldViolations

    errors = FieldViolations()
    value = paths.checked(errors, "path", "", b"/tmp/\xff", raw_field="path_bytes")
    assert not errors and os.fsencode(value) == b"/tmp/\xff"
    assert paths.raw_bytes(value) == b"/tmp/\xff" and paths.display(value) == "/tmp/\ufffd"
    paths.checked(errors, "path", "/tmp/a", b"/tmp/b", raw_field="path_bytes")
    assert errors.violations[0][0] == "path_bytes"


@pytest.mark.parametrize(
    ("text", "current", "is_dir", "expected"),
    [
        ("u+x", 0o644, False, 0o744),
        ("g-w,o=", 0o775, False, 0o755 & ~0o007 & ~0o020),
        ("a=r", 0o777, False, 0o444),
        ("+x", 0o644, False, 0o755),  # no `who`: the umask (022) applies
        ("o+w", 0o644, False, 0o646),  # explicit `who`: it does not
        ("u=rwx,go=rx", 0o000, False, 0o755),
        ("a+X", 0o644, False, 0o644),  # X: only directories or already executable
        ("a+X", 0o644, True, 0o755),
        ("g=u", 0o640, False, 0o660),
        ("u+s,+t", 0o755, True, 0o5755),
    ],
)
def test_symbolic_modes(text: str, current: int, is_dir: bool, expected: int) -> None:
    assert modes.parse(text) == (None, text)
    assert modes.apply(text, current, is_dir=is_dir) == expected


@pytest.mark.parametrize("bad", ["u+q", "x=r", "888", "u+x,", "", "rw"])
def test_bad_modes(bad: str) -> None:
    with pytest.raises(modes.ModeError):
        modes.parse(bad)


def test_octal_mode() -> None:
    assert modes.parse("0750") == (0o750, "")


def test_view_slices(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a\nbb\nccc\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert reading.view_head(fd, 2, 100).data == b"a\nbb\n"
        assert reading.view_head(fd, 10, 100).data == b"a\nbb\nccc\n"
        assert reading.view_tail(fd, 1, 100).data == b"ccc\n"
        assert reading.view_tail(fd, 3, 100).data == b"a\nbb\nccc\n"
        tail = reading.view_tail(fd, 2, 5)  # "bb\nccc\n" is 7 bytes: the oldest are dropped
        assert (tail.data, tail.truncated, tail.offset) == (b"\nccc\n", True, 4)
        assert reading.view_bytes(fd, -4, 0, 100).data == b"ccc\n"
        head = reading.view_head(fd, 3, 4)
        assert head.data == b"a\nbb" and head.truncated
    finally:
        os.close(fd)
    path.write_bytes(b"no newline")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert reading.view_tail(fd, 1, 100).data == b"no newline"
        assert reading.view_head(fd, 1, 100).data == b"no newline"
    finally:
        os.close(fd)
