"""Offset page tokens for List RPCs: opaque to clients, validated on the way back."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TypeVar

from hpcgate.server.api.errors import FieldViolations

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _decode(token: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        if not text.startswith("o:"):
            return None
        offset = int(text[2:])
    except (ValueError, UnicodeDecodeError):
        return None
    return offset if offset >= 0 else None


def check_page_request(page_size: int, page_token: str, errors: FieldViolations) -> None:
    if page_size < 0:
        errors.add("page_size", "must be 0 (server default) or positive")
    if page_token and _decode(page_token) is None:
        errors.add("page_token", "is not a token returned by this RPC; omit it for the first page")


def paginate(items: Sequence[T], page_size: int, page_token: str) -> tuple[list[T], str]:
    """One page of `items` and the token for the next one ('' at the end).

    Call `check_page_request` first; an invalid token here means page one.
    """
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    start = (_decode(page_token) or 0) if page_token else 0
    page = list(items[start : start + size])
    end = start + len(page)
    return page, _encode(end) if end < len(items) else ""


def page_window(page_size: int, page_token: str) -> tuple[int, int]:
    """(offset, size) of the requested page, for lists that the data source pages itself
    (e.g. SQL LIMIT/OFFSET). Call `check_page_request` first."""
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    return ((_decode(page_token) or 0) if page_token else 0), size


def next_page_token(offset: int, returned: int, more: bool) -> str:
    """The token after a page of `returned` items read at `offset` ('' at the end)."""
    return _encode(offset + returned) if more else ""
