"""Submitting and cancelling jobs: Slurm's command lines, and what their answers mean.

Both commands run as the caller (through privilege separation, by the compute domain):
this module only builds their argv, with the system's `bin_dir` and cluster (`-M`) like
every other Slurm call, and reads what they printed. A refusal is classified here, in
Slurm's words, into a `Refusal` the gRPC edge turns into a canonical code.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class RefusalKind(enum.Enum):
    DENIED = "denied"  # an account, partition or QOS the caller may not use
    INVALID = "invalid"  # the request can never run as asked: `field` says what to change
    EXHAUSTED = "exhausted"  # a limit on queued jobs or resources was reached for now
    UNAVAILABLE = "unavailable"  # the controller did not answer: retry
    FAILED = "failed"  # anything else Slurm refused


@dataclass(frozen=True)
class Refusal:
    kind: RefusalKind
    message: str  # Slurm's words, and what to do
    field: str = ""  # for INVALID: the request field to change


_LIMITS = "AccountService.ListProjects shows your associations' QOS and limits"
_INVALID, _DENIED = RefusalKind.INVALID, RefusalKind.DENIED
# How sbatch's refusals map (first match wins): the pattern, the kind, for INVALID the
# request field, and what to do. An accounting/QOS refusal comes as two lines, the limit's
# reason first ("QOSMaxSubmitJobPerUserLimit", "AssocMaxSubmitJobLimit",
# "QOSMaxWallDurationPerJobLimit") then "Job violates accounting/QOS policy (job submit
# limit, user's size and/or time limits)".
_SBATCH_REFUSALS: list[tuple[re.Pattern[str], RefusalKind, str, str]] = [
    (re.compile(r"invalid account|not permitted|access denied|user's group not permitted",
                re.I), _DENIED, "", "use an account, partition and QOS you are allowed"),
    # A per-job size or time limit (with DenyOnLimit): this job can never run as asked.
    (re.compile(r"MaxWallDuration\w*PerJob", re.I), _INVALID, "options.time_limit",
     f"ask for less time; {_LIMITS}"),
    (re.compile(r"PerJob|PerNode|MinTRES", re.I), _INVALID, "options",
     f"ask for fewer resources; {_LIMITS}"),
    # A limit on how many jobs may be queued (MaxSubmitJobs, GrpSubmitJobs) was reached.
    (re.compile(r"SubmitJob", re.I), RefusalKind.EXHAUSTED, "",
     f"you have as many jobs queued as your association or QOS allows: retry when some "
     f"have ended, or cancel some; {_LIMITS}"),
    (re.compile(r"accounting/QOS policy", re.I), RefusalKind.EXHAUSTED, "",
     f"the job exceeds a limit of your association or QOS; {_LIMITS}"),
    (re.compile(r"invalid partition", re.I), _INVALID, "options.partition",
     "ListPartitions shows the partitions"),
    (re.compile(r"invalid qos", re.I), _INVALID, "options.qos",
     "AccountService.ListProjects shows the QOS you may use"),
    (re.compile(r"invalid feature", re.I), _INVALID, "options.constraints",
     "ListNodes shows the nodes' features"),
    (re.compile(r"invalid generic resource", re.I), _INVALID, "options.gpus",
     "ListNodes shows the nodes' GPUs"),
    (re.compile(r"requested time limit is invalid", re.I), _INVALID, "options.time_limit",
     "stay within the partition's time limit (ListPartitions)"),
    (re.compile(r"invalid dependency", re.I), _INVALID, "options.dependency",
     "name jobs that exist, in Slurm's dependency syntax"),
    (re.compile(r"node count specification invalid", re.I), _INVALID, "options.nodes",
     "ask for no more nodes than the partition has (ListPartitions)"),
]  # fmt: skip
_UNREACHABLE = "unable to contact slurm controller"


def _unreachable(stderr: str) -> Refusal | None:
    """UNAVAILABLE when the command could not reach the controller."""
    if _UNREACHABLE in stderr.lower():
        return Refusal(RefusalKind.UNAVAILABLE, f"the scheduler does not answer: {stderr.strip()}")
    return None


class JobControl:
    """sbatch and scancel for one system (its `bin_dir` and cluster)."""

    def __init__(self, bin_dir: Path | None = None, cluster: str = "") -> None:
        self.bin_dir = bin_dir
        self.cluster_args = ["-M", cluster] if cluster else []

    def _exe(self, tool: str) -> str:
        return str(self.bin_dir / tool) if self.bin_dir else tool

    def submit_argv(
        self,
        options: Sequence[str],
        *,
        comment: str | None = None,
        script_path: str | None = None,
        script_arguments: Sequence[str] = (),
    ) -> list[str]:
        """`sbatch --parsable` with `options`; the script is `script_path`, else stdin."""
        argv = [self._exe("sbatch"), *self.cluster_args, "--parsable"]
        if comment:
            argv.append(f"--comment={comment}")
        argv += options
        if script_path is not None:
            return [*argv, script_path, *script_arguments]
        if not script_arguments:
            return argv  # sbatch reads the inline script from its standard input
        # With arguments the script needs a file name: /dev/stdin (the pipe is the user's).
        return [*argv, "/dev/stdin", *script_arguments]

    @staticmethod
    def submitted_job_id(stdout: str) -> str | None:
        """The job id `sbatch --parsable` printed (`ID` or `ID;CLUSTER`), None if none."""
        job_id = stdout.strip().split(";")[0]
        return job_id if job_id.isdigit() else None

    @staticmethod
    def script_unreadable(stderr: str) -> bool:
        """sbatch could not open `script_path` (missing and unreadable look the same)."""
        return "unable to open file" in stderr.lower()

    @staticmethod
    def submit_refusal(stderr: str) -> Refusal:
        """What sbatch's refusal means (each line's `sbatch: error:` dropped, the lines
        joined with '; ')."""
        if (down := _unreachable(stderr)) is not None:
            return down
        lines = (line.strip().removeprefix("sbatch: error: ").strip()
                 for line in stderr.splitlines())  # fmt: skip
        text = "; ".join(line for line in lines if line)
        for pattern, kind, field, hint in _SBATCH_REFUSALS:
            if pattern.search(text):
                return Refusal(kind, f"Slurm refused the job: {text}; {hint}", field)
        return Refusal(RefusalKind.FAILED, f"Slurm refused the job: {text}")

    def cancel_argv(self, job_id: str, *, signal: str = "", batch_only: bool = False) -> list[str]:
        """`scancel` of one job, or with `signal` (a name without SIG, or a number) only
        signalled; `batch_only` reaches the batch shell alone."""
        argv = [self._exe("scancel"), *self.cluster_args]
        if signal:
            argv.append(f"--signal={signal}")
        if batch_only:
            argv.append("--batch")
        return [*argv, job_id]

    @staticmethod
    def cancel_refusal(stderr: str) -> Refusal:
        if (down := _unreachable(stderr)) is not None:
            return down
        return Refusal(RefusalKind.FAILED, f"Slurm refused: {stderr.strip()}")
