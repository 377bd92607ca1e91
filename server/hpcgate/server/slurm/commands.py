"""Running Slurm's command-line tools as async subprocesses: argv only, with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from hpcgate.server.metrics import Metrics
from hpcgate.server.slurm.adapter import SlurmError, SlurmUnavailable

# Phrases Slurm's tools print when the controller or slurmdbd cannot be reached.
_UNREACHABLE = (
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "slurm_load_",
    "unable to establish connection",
    "zero bytes were transmitted",
    "unexpected message received",  # scontrol create/update with slurmctld down
)


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class SlurmCommands:
    """Runs `sinfo`, `scontrol`, ... from `bin_dir` (or PATH) with a timeout."""

    def __init__(
        self,
        bin_dir: Path | None,
        timeout: float,
        cluster: str = "",
        metrics: Metrics | None = None,
    ) -> None:
        self.bin_dir = bin_dir
        self.timeout = timeout
        self.cluster = cluster
        self.metrics = metrics or Metrics.unexposed()
        # Stable, parseable output regardless of the server's locale.
        self.env = dict(os.environ, LC_ALL="C", LANG="C", SLURM_TIME_FORMAT="standard")

    def _exe(self, tool: str) -> str:
        return str(self.bin_dir / tool) if self.bin_dir else tool

    async def run(self, tool: str, *args: str, check: bool = True) -> CommandResult:
        """Run `tool` with `args`; counted and timed by tool name, failures included."""
        with self.metrics.slurm_command(tool):
            return await self._run(tool, *args, check=check)

    async def _run(self, tool: str, *args: str, check: bool) -> CommandResult:
        argv = [self._exe(tool), *args]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise SlurmUnavailable(
                f"{argv[0]} not found: install Slurm's client tools or set slurm.bin_dir"
            ) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except asyncio.CancelledError:  # the caller went away: so does the command
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 1.0)
            raise
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):  # it may have just exited
                proc.kill()
            await proc.wait()
            raise SlurmUnavailable(
                f"`{tool} {' '.join(args)}` did not answer within {self.timeout:g} s"
            ) from None
        result = CommandResult(
            proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
        )
        if check and result.returncode != 0:
            message = result.stderr.strip() or result.stdout.strip() or f"exit {result.returncode}"
            if any(phrase in message.lower() for phrase in _UNREACHABLE):
                raise SlurmUnavailable(message)
            raise SlurmError(message)
        return result
