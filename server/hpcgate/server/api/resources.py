"""Parsing of resource names such as `systems/local`."""

from __future__ import annotations

import re

from hpcgate.server.api.errors import FieldViolations

_SYSTEM_NAME = re.compile(r"^systems/([a-z][a-z0-9-]{0,62})$")
_SYSTEM_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def system_id_from_name(name: str, field: str, errors: FieldViolations) -> str:
    """`systems/{id}` -> id; records a violation and returns '' when malformed."""
    match = _SYSTEM_NAME.match(name)
    if match is None:
        errors.add(
            field, f"must look like 'systems/{{system}}', e.g. 'systems/local'; got {name!r}"
        )
        return ""
    return match.group(1)


def system_id_from_filter(value: str, field: str, errors: FieldViolations) -> str:
    """A system filter given as `local` or `systems/local`; '' means no filter."""
    if not value:
        return ""
    if value.startswith("systems/"):
        return system_id_from_name(value, field, errors)
    if not _SYSTEM_ID.match(value):
        errors.add(field, f"must be a system id like 'local' or 'systems/local'; got {value!r}")
        return ""
    return value
