"""Adding and removing project members: sacctmgr's command lines and what its answers mean.

They run as the caller (through privilege separation, in the accounts domain), so Slurm
itself decides who may: an account's coordinators and Slurm's administrators. This module
only builds the argv (with the system's `bin_dir` and cluster) and reads the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpcgate.server.slurm.job_control import Refusal, RefusalKind


@dataclass(frozen=True)
class MemberLimitSettings:
    """Per-user limits within a project (None: no limit)."""

    max_jobs: int | None = None
    max_submit_jobs: int | None = None
    max_wall_minutes: int | None = None

    def sacctmgr_args(self) -> list[str]:
        pairs = (("MaxJobs", self.max_jobs), ("MaxSubmitJobs", self.max_submit_jobs),
                 ("MaxWall", self.max_wall_minutes))  # fmt: skip
        return [f"{name}={value}" for name, value in pairs if value is not None]


class MembershipControl:
    """`sacctmgr add|remove user` for one system's accounting."""

    def __init__(self, bin_dir: Path | None = None, cluster: str = "") -> None:
        self.exe = str(bin_dir / "sacctmgr") if bin_dir else "sacctmgr"
        self.where_cluster = [f"cluster={cluster}"] if cluster else []

    def add_argv(self, project: str, user: str, limits: MemberLimitSettings) -> list[str]:
        return [self.exe, "--immediate", "add", "user", user, f"account={project}",
                *self.where_cluster, *limits.sacctmgr_args()]  # fmt: skip

    def remove_argv(self, project: str, user: str) -> list[str]:
        return [self.exe, "--immediate", "remove", "user", user, "where",
                f"account={project}", *self.where_cluster]  # fmt: skip

    @staticmethod
    def refusal(output: str) -> Refusal | None:
        """None when sacctmgr did the change; else what its answer means."""
        text = " ".join(line.strip() for line in output.splitlines() if line.strip())
        lowered = text.lower()
        if "privilege" in lowered or "permission denied" in lowered:
            return Refusal(
                RefusalKind.DENIED,
                f"Slurm refused: {text}; only the project's coordinators (and Slurm's "
                "administrators) may change its members",
            )
        if "nothing new added" in lowered or "already exists" in lowered:
            return Refusal(RefusalKind.FAILED, "the user is a member of the project already")
        if "nothing deleted" in lowered:
            return Refusal(RefusalKind.FAILED, "the user is not a member of the project")
        if ("unable to" in lowered and "slurmdbd" in lowered) or "connection refused" in lowered:
            return Refusal(RefusalKind.UNAVAILABLE, f"Slurm's accounting does not answer: {text}")
        if "error" in lowered:
            return Refusal(RefusalKind.FAILED, f"Slurm refused: {text}")
        return None
