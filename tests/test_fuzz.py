"""Property-based fuzzing of every hpcgate.v1 RPC: no input reaches INTERNAL or UNKNOWN.

Requests are built field by field from each method's input descriptor (odd unicode, ints
at their extremes, unknown enum numbers, out-of-range Timestamps and Durations, repeated
fields, maps, oneofs), and raw bytes are sent too (random, and valid encodings with
garbage appended or an invalid UTF-8 string), authenticated as alice and not. The server
is a real gateway on loopback against the real Slurm.

The fuzzer must do no harm, so `make_safe` rewrites every generated request before it is
sent: paths are kept inside a fresh directory of alice's, commands only echo, jobs are
held and carry a marker name (cancelled afterwards), and job ids to cancel never exist.
Raw bytes that happen to decode get the same treatment. Nothing runs as root.

Hypothesis runs in a worker thread (its engine is synchronous); each call is sent on the
event loop the server runs on. Examples are derandomized and the database is off, so CI
sees the same inputs every run.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from files_helpers import user_dir
from google.protobuf import descriptor, message, message_factory
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import bearer, fast_config
from hpcgate.server.app import Gateway
from hpcgate.v1 import (
    account_pb2,
    auth_pb2,
    compute_pb2,
    status_pb2,
    storage_pb2,
    tasks_pb2,
    utilities_pb2,
)

pytestmark = pytest.mark.slurm

MODULES = (status_pb2, auth_pb2, account_pb2, compute_pb2, utilities_pb2, storage_pb2, tasks_pb2)
METHODS = [
    method
    for module in MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]
USER = "alice"
SCOPES = ("read", "write", "execute")
MARKER = f"hpcgate-fuzz-{uuid.uuid4().hex[:8]}"  # the name of every job the fuzzer submits
DEADLINE = 3.0  # seconds per call; DEADLINE_EXCEEDED and CANCELLED by us are fine
FIRST_MESSAGE = 1.0  # seconds to wait for a stream's first message, then 0.2 for a second
EXAMPLES = 40  # per RPC: the whole module stays well under a minute on two cores
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

# --- values -------------------------------------------------------------------------

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
RANGES = {
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
}
# Timestamp/Duration edges: the valid ranges' ends and one past them, and the int limits.
SECONDS_EDGES = [
    -62_135_596_800,
    -62_135_596_801,
    253_402_300_799,
    253_402_300_800,
    315_576_000_000,
    315_576_000_001,
    -315_576_000_001,
    1_750_000_000,
    -1,
    0,
    1,
    *INT64,
]
NANOS_EDGES = [0, 1, -1, 999_999_999, 1_000_000_000, -1_000_000_000, *INT32]
ODD_TEXT = [
    "",
    " ",
    "\x00",
    "\u202e\u0301",
    "\ufeff",
    "\U0001f600",
    "\uffff",
    "\n\r\t",
    "a" * 5000,
    "%s%n%x",
    "${HOME}$(id)`id`",
    "'\";--",
    "/",
    "..",
    "local",
    "systems/local",
    "-1",
    "99999999999999999999",
]
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=24), st.sampled_from(ODD_TEXT)
)
WORD = st.text("abcxyz019_.-", min_size=1, max_size=8)
JOB_NAME = st.builds(lambda n: f"systems/local/jobs/{n}", st.integers(0, 2**32))
TASK_NAME = st.one_of(st.uuids().map(lambda u: f"tasks/{u}"), WORD.map(lambda w: f"tasks/{w}"))
# Plausible values by field name: they get a request past the first checks, so the code
# behind them is fuzzed too (a gentle request has a few wild fields among plausible ones).
HINTS: dict[str, st.SearchStrategy[Any]] = {
    "system": st.sampled_from(["local", "systems/local", "nowhere"]),
    "parent": st.sampled_from(["systems/local", "systems/nowhere"]),
    "name": st.one_of(JOB_NAME, TASK_NAME, st.just("systems/local")),
    "names": st.one_of(JOB_NAME, st.just("systems/local")),
    "user": st.sampled_from(["alice", "bob", "root", "nobody-here"]),
    "partition": st.sampled_from(["debug", "long", "nowhere"]),
    "account": st.sampled_from(["alpha", "beta", "nowhere"]),
    "page_token": st.sampled_from(["", "MTA=", "not-a-token", "LTE="]),
    "request_id": WORD,
    "script": st.just("#!/bin/sh\ntrue\n"),
    "time_limit": st.sampled_from(["10", "1:00:00", "UNLIMITED", "0", "2-00:00:00"]),
    "mode_string": st.sampled_from(["u+x", "755", "go-w", "a=rwx", "u+s"]),
    "signal": st.sampled_from(["TERM", "KILL", "USR1", "0", "SIGHUP"]),
    "expected_sha256": st.sampled_from(["0" * 64, "e3b0c44298fc1c149afbf4c8996fb924" * 2]),
    "facility": st.just(""),
    "client_assertion": st.sampled_from(["a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x"]),
    "command": st.sampled_from(["true", "echo hi"]),
    "argv": st.sampled_from(["/bin/echo", "hi", "-n"]),
    "job_name": WORD,
    "array": st.sampled_from(["0-3", "1,2%1", "0-99999999"]),
    "gpus": st.sampled_from(["1", "gpu:2", "0"]),
}
# Set in one gentle request in six: alternatives to a field that is set instead.
RARE = {"command", "facility", "script_path"}
PATH_HINT = st.sampled_from(["/a", "/b", "/a/b", "/f", "/f.txt", "/a/f", "/d/e/f"])
PATH_FIELDS = {
    "path",
    "path_bytes",
    "source_path",
    "source_path_bytes",
    "destination_path",
    "target",
    "link_path",
    "working_directory",
    "stdout_path",
    "stderr_path",
    "script_path",
}
# sbatch options that name files: dropped, so no fuzzed job can write outside the sandbox.
FILE_OPTIONS = ("--output", "--error", "--input", "--chdir", "-o", "-e", "-i", "-D")


def _mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` five times in six, `odd` otherwise."""
    return st.integers(0, 5).flatmap(lambda i: odd if i == 5 else usual)


def _gentle(field: FieldDescriptor) -> st.SearchStrategy[Any] | None:
    """A plausible value for `field`, or None where the wild one is as good."""
    if field.name in PATH_FIELDS:
        hint = PATH_HINT
        return hint.map(str.encode) if field.type == FieldDescriptor.TYPE_BYTES else hint
    if field.name in HINTS:
        return HINTS[field.name]
    if field.type in RANGES:
        return st.integers(0, 64)
    if field.type == FieldDescriptor.TYPE_ENUM:  # not the UNSPECIFIED zero
        return st.sampled_from([v.number for v in field.enum_type.values][1:] or [0])
    if field.type == FieldDescriptor.TYPE_STRING:
        return WORD
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=32)
    return None


def _scalar(field: FieldDescriptor, gentle: bool = False) -> st.SearchStrategy[Any]:
    plausible = _gentle(field) if gentle else None
    if plausible is not None:
        return _mostly(plausible, _scalar(field))
    kind = field.type
    if kind in RANGES:
        low, high = RANGES[kind]
        return st.one_of(st.sampled_from([0, 1, low, high]), st.integers(low, high))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        width = 32 if kind == FieldDescriptor.TYPE_FLOAT else 64
        return st.floats(width=width)
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(*INT32))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=48), st.sampled_from([b"\xff\xfe", b"/\x00", b""]))
    hint = HINTS.get(field.name)
    return st.one_of(hint, TEXT) if hint is not None else TEXT


@st.composite
def _plausible_time(draw: st.DrawFn, desc: descriptor.Descriptor) -> message.Message:
    value = message_factory.GetMessageClass(desc)()
    if desc.full_name == "google.protobuf.Timestamp":
        value.seconds = draw(st.integers(1_700_000_000, 1_800_000_000))  # type: ignore[attr-defined]
        value.nanos = draw(st.integers(0, 999_999_999))  # type: ignore[attr-defined]
    else:
        value.seconds = draw(st.integers(0, 3600))  # type: ignore[attr-defined]
    return value


@st.composite
def _well_known(draw: st.DrawFn, desc: descriptor.Descriptor) -> message.Message:
    value = message_factory.GetMessageClass(desc)()
    seconds = st.one_of(st.sampled_from(SECONDS_EDGES), st.integers(*INT64))
    nanos = st.one_of(st.sampled_from(NANOS_EDGES), st.integers(*INT32))
    value.seconds = draw(seconds)  # type: ignore[attr-defined]
    value.nanos = draw(nanos)  # type: ignore[attr-defined]
    return value


def _value(field: FieldDescriptor, depth: int, gentle: bool) -> st.SearchStrategy[Any]:
    if field.message_type is None:
        return _scalar(field, gentle)
    if field.message_type.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        wild = _well_known(field.message_type)
        if not gentle:
            return wild
        return _mostly(_plausible_time(field.message_type), wild)
    return messages(field.message_type, depth + 1, gentle)


def _chosen_oneof_fields(draw: st.DrawFn, desc: descriptor.Descriptor, gentle: bool) -> set[str]:
    """For every oneof (synthetic ones of proto3 `optional` too), the one field to set."""
    chosen = set()
    for oneof in desc.oneofs:
        # Hypothesis starts from the first choice: a gentle request sets the oneof.
        options = [*oneof.fields, None] if gentle else [None, *oneof.fields]
        pick = draw(st.sampled_from(options))
        if pick is not None:
            chosen.add(pick.name)
    return chosen


def _set_field(
    draw: st.DrawFn, msg: message.Message, field: FieldDescriptor, depth: int, gentle: bool
) -> None:
    target = getattr(msg, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field, value_field = field.message_type.fields_by_name.values()
        entries = draw(
            st.dictionaries(
                _scalar(key_field, gentle), _value(value_field, depth, gentle), max_size=3
            )
        )
        for key, value in entries.items():
            if value_field.message_type is None:
                target[key] = value
            else:
                target[key].CopyFrom(value)
    elif field.is_repeated:
        values = draw(st.lists(_value(field, depth, gentle), max_size=3))
        if field.message_type is None:
            target.extend(values)
        else:
            for value in values:
                target.add().CopyFrom(value)
    elif field.message_type is not None:
        target.CopyFrom(draw(_value(field, depth, gentle)))
    else:
        setattr(msg, field.name, draw(_scalar(field, gentle)))


@st.composite
def messages(
    draw: st.DrawFn, desc: descriptor.Descriptor, depth: int = 0, gentle: bool = False
) -> message.Message:
    """A `desc` message with a random subset of its fields set (none below depth 3).
    `gentle`: mostly plausible values, so that the request gets past validation."""
    msg = message_factory.GetMessageClass(desc)()
    chosen = _chosen_oneof_fields(draw, desc, gentle)
    for field in desc.fields:
        if field.containing_oneof is not None:
            if field.name in chosen:
                _set_field(draw, msg, field, depth, gentle)
        elif depth < 3 and draw(_presence(field, gentle)):
            _set_field(draw, msg, field, depth, gentle)
    return msg


def _presence(field: FieldDescriptor, gentle: bool) -> st.SearchStrategy[bool]:
    """Whether to set a field: one in two; in a gentle request five in six for the fields
    that name things (what most requests require), one in six for alternatives (`*_bytes`)."""
    if not gentle:
        return st.booleans()
    if field.name.endswith("_bytes") or field.name in RARE:
        return _mostly(st.just(False), st.just(True))
    named = field.name in HINTS or field.name in PATH_FIELDS or field.message_type is not None
    return _mostly(st.just(True), st.just(False)) if named else st.booleans()


# --- doing no harm ------------------------------------------------------------------


def _confine_text(root: str, value: str) -> str:
    """Absolute paths moved under `root`, `..` components gone: nothing can point outside."""
    inside = "/".join("_" if part == ".." else part for part in value.split("/"))
    return f"{root}/{inside.lstrip('/')}" if inside.startswith("/") else inside


def _confine_bytes(root: str, value: bytes) -> bytes:
    inside = b"/".join(b"_" if part == b".." else part for part in value.split(b"/"))
    return root.encode() + b"/" + inside.lstrip(b"/") if inside.startswith(b"/") else inside


def _confine(msg: message.Message, root: str) -> None:
    for field, value in msg.ListFields():
        if field.message_type is not None:
            if not field.message_type.GetOptions().map_entry:
                for sub in value if field.is_repeated else [value]:
                    _confine(sub, root)
        elif field.name in PATH_FIELDS and not field.is_repeated:
            if isinstance(value, bytes):
                setattr(msg, field.name, _confine_bytes(root, value))
            else:
                setattr(msg, field.name, _confine_text(root, value))


def _safe_job(request: compute_pb2.SubmitJobRequest) -> None:
    """Held, marked, harmless: a fuzzed job never runs anything but `true`."""
    options = request.options
    kept = [a for a in options.extra_arguments if not a.startswith(FILE_OPTIONS)]
    del options.extra_arguments[:]
    options.extra_arguments.extend([*kept, "--hold"])
    options.job_name = MARKER
    if request.WhichOneof("script_source") == "script" and request.script.startswith("#!"):
        request.script = "#!/bin/sh\ntrue\n"


def _safe_command(request: utilities_pb2.RunCommandRequest) -> None:
    """Only echo runs: argv[0] is /bin/echo, a shell command echoes its quoted text."""
    if request.argv:
        request.argv[0] = "/bin/echo"
    if request.command:
        request.command = "echo " + shlex.quote(request.command)


def make_safe(msg: message.Message, root: str) -> None:
    """Rewrites `msg` in place so that sending it cannot harm anything outside `root`."""
    _confine(msg, root)
    if isinstance(msg, compute_pb2.SubmitJobRequest):
        _safe_job(msg)
    elif isinstance(msg, utilities_pb2.RunCommandRequest):
        _safe_command(msg)
    elif isinstance(msg, compute_pb2.CancelJobRequest):
        # A job id that Slurm never hands out (above its MaxJobId): no real job is touched.
        msg.name = re.sub(r"\d+", "999999999", msg.name)


def safe_bytes(method: descriptor.MethodDescriptor, data: bytes, root: str) -> bytes:
    """Raw bytes as they are when the server cannot decode them either, else made safe."""
    msg = message_factory.GetMessageClass(method.input_type)()
    try:
        msg.ParseFromString(data)
    except message.DecodeError:
        return data
    make_safe(msg, root)
    return msg.SerializeToString()


# --- inputs -------------------------------------------------------------------------


@dataclass
class Case:
    """One call: the request messages (bytes, already made safe) and who calls."""

    requests: list[bytes]
    auth: str  # "alice", "none" or "garbage"


def _encodings(method: descriptor.MethodDescriptor) -> st.SearchStrategy[bytes]:
    valid = messages(method.input_type).map(lambda m: m.SerializeToString())
    gentle = messages(method.input_type, gentle=True).map(lambda m: m.SerializeToString())
    # Field 1 as a string of invalid UTF-8 (every request's field 1 is a string, or the
    # bytes are a wire-type mismatch: undecodable either way), or garbage after a valid one.
    bad_utf8 = st.binary(min_size=1, max_size=8).map(lambda b: b"\x0a\x02\xc3\x28" + b)
    garbage = st.tuples(valid, st.binary(min_size=1, max_size=16)).map(lambda t: t[0] + t[1])
    raw = st.one_of(st.binary(max_size=64), bad_utf8, garbage)
    return _mostly(gentle, st.one_of(valid, raw))


def cases(method: descriptor.MethodDescriptor, root: str) -> st.SearchStrategy[Case]:
    count = st.integers(1, 3) if method.client_streaming else st.just(1)
    requests = count.flatmap(lambda n: st.lists(_encodings(method), min_size=n, max_size=n))
    if method.client_streaming:  # mostly a real header first, so the chunks get read
        header = utilities_pb2.UploadRequest(
            header=utilities_pb2.UploadHeader(system="local", path="/f")
        ).SerializeToString()
        requests = st.tuples(st.booleans(), requests).map(
            lambda t: [header, *t[1]] if t[0] else t[1]
        )
    safe = requests.map(lambda rs: [safe_bytes(method, r, root) for r in rs])
    auth = st.integers(0, 7).map(lambda i: {6: "none", 7: "garbage"}.get(i, "alice"))
    return st.builds(Case, safe, auth)


# --- calls --------------------------------------------------------------------------


def _path(method: descriptor.MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


async def _read_a_little(call: Any) -> tuple[grpc.StatusCode, str]:
    """Reads at most two messages, then cancels (CANCELLED by us is fine)."""
    try:
        first = await asyncio.wait_for(call.read(), FIRST_MESSAGE)
        if first is not grpc.aio.EOF:
            await asyncio.wait_for(call.read(), 0.2)
    except TimeoutError:
        call.cancel()
        return grpc.StatusCode.CANCELLED, ""
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details() or ""
    call.cancel()
    return await call.code(), await call.details()


async def call_once(
    channel: grpc.aio.Channel, method: descriptor.MethodDescriptor, case: Case, md: Any
) -> tuple[grpc.StatusCode, str]:
    """The status code and details of one call with the raw request bytes."""
    path = _path(method)
    metadata = {"alice": md, "none": None, "garbage": [("authorization", "Bearer x.y.z")]}
    kwargs: dict[str, Any] = {"timeout": DEADLINE, "metadata": metadata[case.auth]}
    try:
        if method.client_streaming:
            await channel.stream_unary(path)(iter(case.requests), **kwargs)
        elif method.server_streaming:
            return await _read_a_little(channel.unary_stream(path)(case.requests[0], **kwargs))
        else:
            await channel.unary_unary(path)(case.requests[0], **kwargs)
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


# --- the test -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Path]:
    with user_dir(USER) as path:
        yield path


@pytest.fixture(scope="module")
async def fuzz_gateway(
    slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    gateway = Gateway(fast_config(tmp_path_factory.mktemp("fuzz")))
    await gateway.start()
    await asyncio.wait_for(gateway.hub.wait_ready(), 30)
    yield gateway
    await gateway.stop()
    _cancel_marked_jobs()


def _cancel_marked_jobs() -> None:
    """Cancels, by id, whatever the fuzzer submitted (held jobs named MARKER)."""
    listed = subprocess.run(
        ["squeue", "-h", "-u", USER, "-n", MARKER, "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if listed:
        subprocess.run(["scancel", *listed], check=False)


async def _serving(channel: grpc.aio.Channel) -> bool:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
async def test_no_input_reaches_internal_or_unknown(
    method: descriptor.MethodDescriptor, fuzz_gateway: Gateway, sandbox: Path
) -> None:
    loop = asyncio.get_running_loop()
    md = bearer(fuzz_gateway, USER, SCOPES)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{fuzz_gateway.port}") as channel:

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases(method, str(sandbox)))
        def run(case: Case) -> None:
            future = asyncio.run_coroutine_threadsafe(call_once(channel, method, case, md), loop)
            code, details = future.result(timeout=DEADLINE + 10)
            assert code not in FORBIDDEN, f"{code.name}: {details}"

        await asyncio.to_thread(run)
        assert await _serving(channel)
