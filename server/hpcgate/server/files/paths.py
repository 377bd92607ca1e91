"""Validation of client-supplied paths, before anything touches a filesystem.

The rules are lexical only (absolute, no `.`/`..`/empty components, no NUL, bounded
lengths): resolution, symlinks and permissions are the kernel's business, done as the
caller by their privsep worker. Non-UTF-8 paths arrive as raw bytes and travel on as
`str` with surrogate escapes (os.fsdecode), which the worker turns back into the bytes.
"""

from __future__ import annotations

import os

from hpcgate.server.errors import FieldViolations

PATH_MAX = 4096  # bytes, including the terminating NUL in the kernel's count
NAME_MAX = 255  # bytes per component


def problem(path_bytes: bytes) -> str | None:
    """What is wrong with an absolute path given as bytes, or None."""
    if not path_bytes:
        return "is required"
    if not path_bytes.startswith(b"/"):
        return "must be an absolute path (starting with '/')"
    if b"\0" in path_bytes:
        return "must not contain NUL bytes"
    if len(path_bytes) >= PATH_MAX:
        return f"is longer than {PATH_MAX - 1} bytes"
    if path_bytes == b"/":
        return None
    if path_bytes.endswith(b"/"):
        return "must not end with '/' (remove the trailing slash)"
    for part in path_bytes[1:].split(b"/"):
        if part == b"":
            return "must not contain empty components ('//')"
        if part in (b".", b".."):
            return "must not contain '.' or '..' components; give the absolute path"
        if len(part) > NAME_MAX:
            return f"has a component longer than {NAME_MAX} bytes"
    return None


def checked(
    errors: FieldViolations,
    field: str,
    text: str,
    raw: bytes = b"",
    *,
    raw_field: str = "",
) -> str:
    """The path to use (surrogate-escaped when given as raw bytes), or '' after adding the
    violation to `errors`. `raw` is the request's `*_bytes` alternative, if it has one."""
    if raw:
        if text:
            errors.add(raw_field, f"give either {field} or {raw_field}, not both")
            return ""
        field, value = raw_field, raw
    else:
        value = text.encode()
    reason = problem(value)
    if reason is not None:
        errors.add(field, reason)
        return ""
    return os.fsdecode(value)


def raw_bytes(path: str) -> bytes | None:
    """The path's bytes when they are not valid UTF-8 (for `path_bytes`), else None."""
    data = os.fsencode(path)
    try:
        data.decode()
    except UnicodeDecodeError:
        return data
    return None


def display(path: str) -> str:
    """The path for messages and string fields (U+FFFD for undecodable bytes)."""
    return os.fsencode(path).decode(errors="replace")
