"""SubmitJob's request checks and its translation into sbatch's options (the edge: it
reads the request message).

Everything a request can get wrong is checked here, before Slurm sees it, and reported
field by field. The result is the options of `sbatch --parsable` (whose command line the
system's JobControl, in slurm/, assembles): no shell ever parses it.
`#SBATCH` lines in the script still apply; options given here come later on sbatch's
command line and so win, exactly as with sbatch itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from hpcgate.server.errors import FieldViolations
from hpcgate.server.slurm import PartitionInfo
from hpcgate.server.slurm.adapter import JobRecord
from hpcgate.server.slurm.job_control import JobControl
from hpcgate.v1 import compute_pb2

# Slurm's time limit forms: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_TIME_FORMS = [
    re.compile(r"^(?P<m>\d+)$"),
    re.compile(r"^(?P<m>\d+):(?P<s>\d+)$"),
    re.compile(r"^(?P<h>\d+):(?P<m>\d+):(?P<s>\d+)$"),
    re.compile(r"^(?P<d>\d+)-(?P<h>\d+)$"),
    re.compile(r"^(?P<d>\d+)-(?P<h>\d+):(?P<m>\d+)$"),
    re.compile(r"^(?P<d>\d+)-(?P<h>\d+):(?P<m>\d+):(?P<s>\d+)$"),
]
_UNLIMITED = {"UNLIMITED", "INFINITE"}
_WORD = re.compile(r"^[^\s\x00]{1,256}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_GPUS = re.compile(r"^([A-Za-z0-9_.-]+:)?[1-9]\d*$")
_ARRAY = re.compile(r"^\d+(-\d+)?(:\d+)?(,\d+(-\d+)?(:\d+)?)*(%\d+)?$")
_DEPENDENCY = re.compile(r"^(singleton|[a-z_]+(:[0-9_+]+)+)([,?](singleton|[a-z_]+(:[0-9_+]+)+))*$")
# Options that would change who runs the job, how sbatch behaves, or bypass the checks.
_FORBIDDEN_EXTRA = {
    "--uid", "--gid", "--wrap", "--parsable", "--chdir", "--export", "--export-file",
    "--get-user-env", "--test-only", "--wait", "--comment", "--help", "--usage", "--version",
}  # fmt: skip
_MEMORY_FLAGS = {"--mem", "--mem-per-cpu", "--mem-per-gpu"}


def parse_time_limit(text: str) -> int | None:
    """Minutes for a Slurm time limit string (None = unlimited); ValueError if unparsable."""
    if text.upper() in _UNLIMITED:
        return None
    for form in _TIME_FORMS:
        match = form.match(text)
        if match:
            parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
            seconds = (
                parts.get("d", 0) * 86400
                + parts.get("h", 0) * 3600
                + parts.get("m", 0) * 60
                + parts.get("s", 0)
            )
            if seconds <= 0:
                raise ValueError("must be longer than zero")
            return (seconds + 59) // 60
    raise ValueError("is not a Slurm time: use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")


@dataclass
class Submission:
    """What to run: sbatch's options, and the script (inline bytes or a path on the system),
    on the system whose `jobs` (bin_dir, cluster) builds the command line."""

    jobs: JobControl
    options: list[str] = field(default_factory=list)
    script: bytes | None = None
    script_path: str | None = None
    script_arguments: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    working_directory: str = ""

    def argv(self, comment: str | None) -> list[str]:
        return self.jobs.submit_argv(self.options, comment=comment, script_path=self.script_path,
                                     script_arguments=self.script_arguments)  # fmt: skip


def _check_word(value: str, field_name: str, errors: FieldViolations) -> bool:
    if value and not _WORD.match(value):
        errors.add(field_name, "must be one word: no spaces, NUL bytes or line breaks")
        return False
    return bool(value)


def build_submission(
    request: compute_pb2.SubmitJobRequest,
    partitions: list[PartitionInfo],
    max_script_bytes: int,
    errors: FieldViolations,
    jobs: JobControl,
) -> Submission:
    """Validate `request` (recording every bad field in `errors`) and build the submission
    for the system whose sbatch `jobs` describes."""
    sub = Submission(jobs)
    source = request.WhichOneof("script_source")
    if source is None:
        errors.add("script", "give either script (the batch script's text) or script_path")
    elif source == "script":
        data = request.script.encode()
        if len(data) > max_script_bytes:
            errors.add("script", f"is {len(data)} bytes; the limit is {max_script_bytes}")
        elif not request.script.startswith("#!"):
            errors.add("script", "must start with an interpreter line such as #!/bin/bash")
        elif "\x00" in request.script:
            errors.add("script", "must not contain NUL bytes")
        sub.script = data
    else:
        if not request.script_path.startswith("/") or "\x00" in request.script_path:
            errors.add("script_path", "must be an absolute path on the system")
        sub.script_path = request.script_path
    for i, arg in enumerate(request.script_arguments):
        if "\x00" in arg:
            errors.add(f"script_arguments[{i}]", "must not contain NUL bytes")
    sub.script_arguments = list(request.script_arguments)

    o = request.options
    opts: list[str] = []
    # Free-form arguments first, so the structured options after them win.
    for i, arg in enumerate(o.extra_arguments):
        name = arg.split("=", 1)[0]
        where = f"options.extra_arguments[{i}]"
        if not arg.startswith("--") or "\x00" in arg or "\n" in arg:
            errors.add(where, "must be a long option such as --mail-type=END")
        elif name in _FORBIDDEN_EXTRA:
            errors.add(where, f"{name} cannot be passed through; use the structured field")
        elif name in _MEMORY_FLAGS and o.WhichOneof("memory"):
            errors.add(where, f"conflicts with options.{o.WhichOneof('memory')}")
        else:
            opts.append(arg)

    if _check_word(o.job_name, "options.job_name", errors):
        opts.append(f"--job-name={o.job_name}")
    known = {p.name: p for p in partitions}
    if o.partition:
        if o.partition not in known:
            errors.add(
                "options.partition",
                f"no partition {o.partition!r}; partitions: {', '.join(sorted(known))}",
            )
        opts.append(f"--partition={o.partition}")
    elif not any(p.is_default for p in partitions) and not any(
        a.startswith("--partition") for a in o.extra_arguments
    ):
        errors.add(
            "options.partition",
            f"this system has no default partition; name one of {', '.join(sorted(known))}",
        )
    for value, name, flag in (
        (o.account, "account", "--account"),
        (o.qos, "qos", "--qos"),
        (o.reservation, "reservation", "--reservation"),
        (o.constraints, "constraints", "--constraint"),
    ):
        if _check_word(value, f"options.{name}", errors):
            opts.append(f"{flag}={value}")
    for count, flag in (
        (o.nodes, "--nodes"),
        (o.ntasks, "--ntasks"),
        (o.ntasks_per_node, "--ntasks-per-node"),
        (o.cpus_per_task, "--cpus-per-task"),
    ):
        if count:  # 0 means "not set" (proto3); counts are never negative (uint32)
            opts.append(f"{flag}={count}")
    memory = o.WhichOneof("memory")
    if memory == "memory_per_node_mib":
        opts.append(f"--mem={o.memory_per_node_mib}M")  # 0 = all of the node's memory
    elif memory == "memory_per_cpu_mib":
        if o.memory_per_cpu_mib == 0:
            errors.add("options.memory_per_cpu_mib", "must be positive")
        opts.append(f"--mem-per-cpu={o.memory_per_cpu_mib}M")
    if o.gpus:
        if not _GPUS.match(o.gpus):
            errors.add("options.gpus", "must be a count or TYPE:COUNT, e.g. 2 or a100:2")
        opts.append(f"--gpus={o.gpus}")
    if o.time_limit:
        try:
            minutes = parse_time_limit(o.time_limit)
        except ValueError as e:
            errors.add("options.time_limit", str(e))
        else:
            opts.append(f"--time={'UNLIMITED' if minutes is None else minutes}")
    for value, name, flag in (
        (o.stdout_path, "stdout_path", "--output"),
        (o.stderr_path, "stderr_path", "--error"),
    ):
        if value:
            if "\x00" in value or "\n" in value:
                errors.add(f"options.{name}", "must not contain NUL bytes or line breaks")
            opts.append(f"{flag}={value}")
    if o.dependency:
        if not _DEPENDENCY.match(o.dependency):
            errors.add("options.dependency", "must look like afterok:123[:124][,afterany:125]")
        opts.append(f"--dependency={o.dependency}")
    if o.array:
        if not _ARRAY.match(o.array):
            errors.add("options.array", "must look like 0-15, 1,3,5 or 0-99:2%10")
        opts.append(f"--array={o.array}")
    if o.working_directory:
        if not o.working_directory.startswith("/") or "\x00" in o.working_directory:
            errors.add("options.working_directory", "must be an absolute path")
        sub.working_directory = o.working_directory
    for name, value in o.environment.items():
        if not _ENV_NAME.match(name):
            errors.add(f"options.environment[{name}]", "is not a valid variable name")
        elif name.startswith(("SLURM_", "SBATCH_")):
            errors.add(f"options.environment[{name}]", "SLURM_/SBATCH_ variables are Slurm's")
        elif "\x00" in value:
            errors.add(f"options.environment[{name}]", "value must not contain NUL bytes")
        sub.environment[name] = value
    export = o.export_environment
    if export == compute_pb2.EXPORT_ENVIRONMENT_NONE:
        # Only the named variables (and Slurm's own) reach the job.
        names = ",".join(sorted(sub.environment))
        opts.append(f"--export={names}" if names else "--export=NONE")
    elif export == compute_pb2.EXPORT_ENVIRONMENT_LOGIN:
        opts.extend(["--get-user-env", "--export=ALL"])
    else:
        # MINIMAL: sbatch runs with a clean environment (PATH, HOME, USER, LANG and the
        # request's variables), never the server's, and exports exactly that.
        opts.append("--export=ALL")
    sub.options = opts
    return sub


def submitted_record(
    request: compute_pb2.SubmitJobRequest,
    job_id: str,
    user: str,
    uid: int,
    working_directory: str,
    now: datetime,
) -> JobRecord:
    """The job as SubmitJob knows it the moment sbatch has accepted it: its id, PENDING,
    and what the request itself set (`#SBATCH` lines may set more). The hub's next poll,
    moments later, replaces it with the controller's full record; reading it back here
    would cost a Slurm call per submission."""
    o = request.options
    time_limit = None
    if o.time_limit:
        minutes = parse_time_limit(o.time_limit)
        time_limit = None if minutes is None else minutes * 60
    return JobRecord(
        job_id=job_id,
        source="submitted",
        array_job_id=int(job_id) if o.array else 0,
        array_task_spec=o.array,
        job_name=o.job_name,
        user=user,
        uid=uid,
        account=o.account,
        partition=o.partition,
        qos=o.qos,
        state="PENDING",
        raw_state="PENDING",
        submit_time=now,
        time_limit_seconds=time_limit,
        working_directory=working_directory,
        stdout_path=o.stdout_path,
        stderr_path=o.stderr_path,
        dependency=o.dependency,
        reservation=o.reservation,
        constraints=o.constraints,
    )
