"""RunCommandRequest -> CommandSpec: the checks of every field but `system` (see the
RunCommand comment in utilities.proto and files/commands.py for the decisions)."""

from __future__ import annotations

import re

from hpcgate.server import privsep
from hpcgate.server.api.timeconv import read_duration
from hpcgate.server.config import CommandsConfig
from hpcgate.server.errors import FieldViolations
from hpcgate.server.files.commands import CommandSpec
from hpcgate.v1 import utilities_pb2

MAX_STDIN = 1024 * 1024
MAX_PATH = 4096
SHELL = "/bin/sh"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENTITY_VARIABLES = frozenset({"USER", "LOGNAME"})


def _refused_variable(key: str) -> str | None:
    if key in _IDENTITY_VARIABLES:
        return "is the caller's identity and cannot be set"
    if privsep.is_loader_variable(key):
        return "is refused: it changes how programs are loaded"
    return None


def command_spec(request: utilities_pb2.RunCommandRequest, config: CommandsConfig) -> CommandSpec:
    """The command a RunCommandRequest asks for, every field but `system` checked; raises
    one INVALID_ARGUMENT naming each bad field."""
    bad = FieldViolations()
    argv = list(request.argv)
    if argv and request.command:
        bad.add("command", "give either argv or command (with use_shell), not both")
    elif not argv and not request.command:
        bad.add("argv", "give argv (run without a shell), or command with use_shell")
    if request.command and not request.use_shell:
        bad.add("use_shell", "must be true when command is given (it runs /bin/sh -c command)")
    if argv and request.use_shell:
        bad.add("use_shell", "applies to command only; argv is always run without a shell")
    if argv and not argv[0]:
        bad.add("argv[0]", "must not be empty")
    for index, arg in enumerate(argv):
        if "\0" in arg:
            bad.add(f"argv[{index}]", "must not contain NUL bytes")
    if "\0" in request.command:
        bad.add("command", "must not contain NUL bytes")

    cwd = request.working_directory
    if cwd:
        if "\0" in cwd:
            bad.add("working_directory", "must not contain NUL bytes")
        elif not cwd.startswith("/"):
            bad.add("working_directory", f"{cwd!r} is not an absolute path")
        elif ".." in cwd.split("/"):
            bad.add("working_directory", "must not contain '..' components")
        elif len(cwd.encode()) > MAX_PATH:
            bad.add("working_directory", f"is longer than {MAX_PATH} bytes")

    for key, value in request.environment.items():
        if not _NAME.fullmatch(key):
            bad.add("environment", f"{key!r} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)")
            continue
        if (why := _refused_variable(key)) is not None:
            bad.add(f"environment.{key}", why)
        if "\0" in value:
            bad.add(f"environment.{key}", "the value must not contain NUL bytes")

    timeout = config.default_timeout
    if read_duration(request, "timeout", bad) is not None:  # None: unset or out of range
        nanoseconds = request.timeout.ToNanoseconds()  # not the timedelta's microseconds
        if nanoseconds < 0:
            bad.add("timeout", "must be a non-negative duration")
        elif nanoseconds:  # an explicit zero means the default, like an unset one
            timeout = nanoseconds / 1e9
            if timeout > config.max_timeout:
                bad.add(
                    "timeout",
                    f"must be at most {config.max_timeout:g} s (the server's maximum)",
                )

    max_output = request.max_output_bytes or config.default_output_bytes
    if max_output > config.max_output_bytes:
        bad.add(
            "max_output_bytes",
            f"must be at most {config.max_output_bytes} bytes (the server's maximum)",
        )
    if len(request.stdin) > MAX_STDIN:
        bad.add("stdin", f"must be at most {MAX_STDIN} bytes (1 MiB)")
    bad.raise_if_any()

    return CommandSpec(
        argv=tuple(argv) if argv else (SHELL, "-c", request.command),
        cwd=cwd or None,
        env=dict(request.environment),
        timeout=timeout,
        max_output=max_output,
        stdin=bytes(request.stdin),
    )
