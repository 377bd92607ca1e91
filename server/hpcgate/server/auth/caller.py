"""The authenticated caller of the current RPC, available to servicers.

The auth check (see interceptor) sets it for the duration of one RPC handler; servicers
read it with `current_caller()` and never parse tokens themselves.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from datetime import datetime

from hpcgate.server.errors import Code, DomainError


@dataclass(frozen=True)
class Caller:
    user: str  # POSIX user name the work is done as
    client_id: str  # registered client, or `issuer:subject` for external issuers
    scopes: frozenset[str]
    issuer: str
    audience: str
    issued_at: datetime
    expires_at: datetime
    token_id: str


_current: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


def current_caller() -> Caller:
    """The caller of the RPC being served; UNAUTHENTICATED if the RPC had no token."""
    caller = _current.get()
    if caller is None:
        raise DomainError(Code.UNAUTHENTICATED, "this RPC needs an access token")
    return caller


def set_caller(caller: Caller | None) -> contextvars.Token[Caller | None]:
    return _current.set(caller)


def reset_caller(token: contextvars.Token[Caller | None]) -> None:
    _current.reset(token)
