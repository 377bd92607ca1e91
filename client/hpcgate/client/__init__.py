"""The hpcgate Python client: `Client` (asyncio) and `SyncClient` (blocking).

    from hpcgate.client import connect

    async with connect(token=token, system="local") as client:
        job = await client.jobs.submit(script="#!/bin/sh\\nhostname\\n")
        await job.wait()

Generated stubs live in `hpcgate.v1`; see docs/client.md for every class and method.
"""

from hpcgate.client.auth import ClientCredentials
from hpcgate.client.channel import DEFAULT_ADDRESS
from hpcgate.client.core import Client, RetryPolicy, TokenCommand, connect
from hpcgate.client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    HpcgateError,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from hpcgate.client.sync import SyncClient

__all__ = [
    "DEFAULT_ADDRESS",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "Client",
    "ClientCredentials",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "HpcgateError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryPolicy",
    "SyncClient",
    "TokenCommand",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "connect",
]
