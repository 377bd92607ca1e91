"""chmod(1) mode strings: octal (`750`) or symbolic (`u+x,g-w,o=`), as GNU chmod reads them."""

from __future__ import annotations

import re
import stat

_OCTAL = re.compile(r"^[0-7]{1,4}$")
_CLAUSE = re.compile(r"^([ugoa]*)((?:[-+=](?:[rwxXst]*|[ugo]))+)$")
_ACTION = re.compile(r"([-+=])([ugo]|[rwxXst]*)")
_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007}  # bits a class covers, incl. s/t


class ModeError(ValueError):
    """The mode string is not valid chmod syntax."""


def parse(text: str) -> tuple[int | None, str]:
    """(octal value, '') for octal modes, (None, text) for symbolic ones; ModeError if bad."""
    if _OCTAL.match(text):
        return int(text, 8), ""
    for clause in text.split(","):
        if not _CLAUSE.match(clause):
            raise ModeError(
                f"{text!r} is not a chmod mode: use octal (750) or symbolic clauses such "
                "as u+x,g-w,o= (who: ugoa; op: + - =; perms: rwxXst or one of ugo)"
            )
    return None, text


def apply(text: str, current: int, *, is_dir: bool, umask: int = 0o022) -> int:
    """The new permission bits for symbolic `text` applied to `current` (`st_mode`)."""
    mode = stat.S_IMODE(current)
    for clause in text.split(","):
        found = _CLAUSE.match(clause)
        if found is None:
            raise ModeError(f"{clause!r} is not a chmod clause")
        who, actions = found.group(1), found.group(2)
        explicit = bool(who)
        classes = "ugo" if not who or "a" in who else who
        mask = 0
        for c in classes:
            mask |= _WHO[c]
        for op, perms in _ACTION.findall(actions):
            bits = _bits(perms, mode, classes, is_dir=is_dir or bool(current & 0o111))
            bits &= mask
            if not explicit:
                bits &= ~umask  # like chmod: `+x` without who respects the umask
            if op == "+":
                mode |= bits
            elif op == "-":
                mode &= ~bits
            else:
                mode = (mode & ~mask) | bits
    return mode


def _bits(perms: str, mode: int, classes: str, *, is_dir: bool) -> int:
    if perms in ("u", "g", "o"):  # copy another class's rwx
        shift = {"u": 6, "g": 3, "o": 0}[perms]
        rwx = (mode >> shift) & 0o7
        return sum(rwx << s for c, s in (("u", 6), ("g", 3), ("o", 0)) if c in classes)
    bits = 0
    for p in perms:
        if p == "r":
            bits |= 0o444
        elif p == "w":
            bits |= 0o222
        elif p == "x" or (p == "X" and is_dir):
            bits |= 0o111
        elif p == "s":
            bits |= 0o6000
        elif p == "t":
            bits |= 0o1000
    return bits
