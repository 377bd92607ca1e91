"""Resource names such as `systems/local`, and the one lookup of the system a request names.

`systems/{system}` is the canonical form everywhere. The request fields that v1 documented
as a bare system id (UtilitiesService's `system`, TransferEndpoint.system, the status
filters) accept that form too, for compatibility; `parent` and `name` fields do not.
"""

from __future__ import annotations

import re

from hpcgate.server.api.errors import DomainError, FieldViolations, not_found
from hpcgate.server.config import Config, SystemConfig

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


def unknown_system(config: Config, system_id: str) -> DomainError:
    """NOT_FOUND for a well-formed name of a system this server does not have."""
    known = ", ".join(f"systems/{s.id}" for s in config.systems)
    return not_found(f"no system 'systems/{system_id}' here; known systems: {known}")


def lookup_system(
    config: Config, value: str, field: str, errors: FieldViolations, *, bare_id: bool = False
) -> SystemConfig | None:
    """The configured system `value` names: `systems/{system}`, or also the bare id where
    v1 documents that (`bare_id`). Empty or malformed: a violation in `errors` and None;
    unknown: NOT_FOUND naming the known systems."""
    if not value:
        errors.add(field, "is required: the system, e.g. 'systems/local'")
        return None
    parse = system_id_from_filter if bare_id else system_id_from_name
    system_id = parse(value, field, errors)
    if not system_id:
        return None
    system = config.system(system_id)
    if system is None:
        raise unknown_system(config, system_id)
    return system
