"""Servicers for the parts of the v1 contract this server does not implement yet.

Each RPC answers UNIMPLEMENTED with a message naming the RPC, instead of grpc's bare
"Method not implemented!", so a client knows it reached the right server and method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from hpcgate.server.api.errors import ApiError


def _unimplemented(full_name: str) -> Callable[..., Any]:
    async def method(self: object, request: object, context: object) -> None:
        raise ApiError(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{full_name} is part of the hpcgate v1 API but not implemented by this server "
            "version yet; check the server's release notes or use a newer server",
        )

    return method


def unimplemented_servicer(base: type, service: ServiceDescriptor) -> object:
    """An instance of the generated servicer `base` whose every RPC is UNIMPLEMENTED."""
    methods = {m.name: _unimplemented(f"{service.full_name}/{m.name}") for m in service.methods}
    cls = type(f"Unimplemented{service.name}", (base,), methods)
    return cls()
