"""The scheduler port's sbatch and scancel (slurm/job_control.py), without Slurm: the
command lines each adapter builds from the system's settings, and what Slurm's answers
mean. The samples are Slurm 22.05.8's words, captured on the test cluster as alice."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hpcgate.server.config import SlurmConfig
from hpcgate.server.slurm.cli_adapter import CommandLineAdapter
from hpcgate.server.slurm.job_control import JobControl, RefusalKind

BIN = Path("/opt/slurm/bin")


@pytest.mark.parametrize(
    ("settings", "prefix"),
    [
        (SlurmConfig(), ["sbatch"]),
        (SlurmConfig(bin_dir=BIN), ["/opt/slurm/bin/sbatch"]),
        (SlurmConfig(bin_dir=BIN, cluster="hpcgate"), ["/opt/slurm/bin/sbatch", "-M", "hpcgate"]),
    ],
)
def test_the_command_line_adapter_builds_sbatch_and_scancel_from_its_settings(
    settings: SlurmConfig, prefix: list[str]
) -> None:
    jobs = CommandLineAdapter(settings).jobs
    scancel = [prefix[0].replace("sbatch", "scancel"), *prefix[1:]]
    assert jobs.submit_argv(["--job-name=x", "--time=10"], comment="hpcgate:alice:r1") == [
        *prefix, "--parsable", "--comment=hpcgate:alice:r1", "--job-name=x", "--time=10",
    ]  # fmt: skip
    assert jobs.submit_argv([]) == [*prefix, "--parsable"]  # the script on stdin
    assert jobs.submit_argv([], script_arguments=["a b"]) == [
        *prefix, "--parsable", "/dev/stdin", "a b",
    ]  # fmt: skip
    assert jobs.submit_argv(["-p", "debug"], script_path="/home/alice/run.sh",
                            script_arguments=["--in", "x"]) == [
        *prefix, "--parsable", "-p", "debug", "/home/alice/run.sh", "--in", "x",
    ]  # fmt: skip
    assert jobs.cancel_argv("42") == [*scancel, "42"]
    assert jobs.cancel_argv("42_3", signal="USR1") == [*scancel, "--signal=USR1", "42_3"]
    assert jobs.cancel_argv("42", signal="9", batch_only=True) == [
        *scancel, "--signal=9", "--batch", "42",
    ]  # fmt: skip


def test_the_pyslurm_adapter_builds_the_same_command_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sbatch and scancel run as the caller, so pyslurm (in the server's process) cannot
    run them: the pyslurm adapter builds Slurm's command lines, with its settings."""
    from test_pyslurm_adapter import fake_pyslurm

    from hpcgate.server.slurm.pyslurm_adapter import PyslurmAdapter

    module = fake_pyslurm()
    monkeypatch.setitem(sys.modules, "pyslurm", module)
    monkeypatch.setitem(sys.modules, "pyslurm.settings", module.settings)
    settings = SlurmConfig(adapter="pyslurm", bin_dir=BIN, cluster="local")
    adapter = PyslurmAdapter(settings, executor_factory=lambda: ThreadPoolExecutor(1))
    cli = CommandLineAdapter(settings).jobs
    assert adapter.jobs.submit_argv(["-p", "debug"], comment="c") == cli.submit_argv(
        ["-p", "debug"], comment="c"
    )
    assert adapter.jobs.submit_argv([])[:3] == ["/opt/slurm/bin/sbatch", "-M", "local"]
    assert adapter.jobs.cancel_argv("7", batch_only=True) == [
        "/opt/slurm/bin/scancel", "-M", "local", "--batch", "7",
    ]  # fmt: skip


def test_the_job_id_sbatch_printed() -> None:
    assert JobControl.submitted_job_id("10038\n") == "10038"
    assert JobControl.submitted_job_id("9929;hpcgate\n") == "9929"  # with -M
    assert JobControl.submitted_job_id("") is None
    assert JobControl.submitted_job_id("Submitted batch job 10038\n") is None  # no --parsable


def _sbatch(*lines: str) -> str:
    return "".join(f"sbatch: error: {line}\n" for line in lines)


_FAILED = "Batch job submission failed: "
_ACCOUNT = "Invalid account or account/partition combination specified"


@pytest.mark.parametrize(
    ("stderr", "kind", "field", "words"),
    [
        (_sbatch(f"{_FAILED}{_ACCOUNT}"), RefusalKind.DENIED, "", f"{_FAILED}{_ACCOUNT}"),
        (_sbatch("invalid partition specified: nosuch",
                 f"{_FAILED}Invalid partition name specified"),
         RefusalKind.INVALID, "options.partition",
         f"invalid partition specified: nosuch; {_FAILED}Invalid partition name specified"),
        (_sbatch(f"{_FAILED}Invalid qos specification"), RefusalKind.INVALID, "options.qos",
         f"{_FAILED}Invalid qos specification"),
        (_sbatch(f"{_FAILED}Invalid feature specification"), RefusalKind.INVALID,
         "options.constraints", f"{_FAILED}Invalid feature specification"),
        (_sbatch("Invalid generic resource (gres) specification"), RefusalKind.INVALID,
         "options.gpus", "Invalid generic resource (gres) specification"),
        (_sbatch("QOSMaxSubmitJobPerUserLimit", f"{_FAILED}Job violates accounting/QOS policy "
                 "(job submit limit, user's size and/or time limits)"),
         RefusalKind.EXHAUSTED, "", "QOSMaxSubmitJobPerUserLimit; "),
        (_sbatch("QOSMaxWallDurationPerJobLimit", f"{_FAILED}Job violates accounting/QOS "
                 "policy (job submit limit, user's size and/or time limits)"),
         RefusalKind.INVALID, "options.time_limit", "QOSMaxWallDurationPerJobLimit; "),
        (_sbatch("Unable to open file /nonexistent.sh"), RefusalKind.FAILED, "",
         "Unable to open file /nonexistent.sh"),
    ],
)  # fmt: skip
def test_sbatch_refusals_are_classified(
    stderr: str, kind: RefusalKind, field: str, words: str
) -> None:
    refusal = JobControl.submit_refusal(stderr)
    assert (refusal.kind, refusal.field) == (kind, field)
    assert refusal.message.startswith(f"Slurm refused the job: {words}")
    assert "sbatch: error:" not in refusal.message


def test_an_unreachable_controller_is_unavailable_for_both() -> None:
    down = "Unable to contact slurm controller (connect failure)"
    submit = JobControl.submit_refusal(_sbatch(f"{_FAILED}{down}"))
    cancel = JobControl.cancel_refusal(f"scancel: error: Kill job error on job id 42: {down}\n")
    assert submit.kind is cancel.kind is RefusalKind.UNAVAILABLE
    assert submit.message == f"the scheduler does not answer: sbatch: error: {_FAILED}{down}"
    assert cancel.message.startswith("the scheduler does not answer: scancel: error:")


def test_other_scancel_refusals_keep_slurms_words() -> None:
    stderr = "scancel: error: Kill job error on job id 999999: Invalid job id specified\n"
    refusal = JobControl.cancel_refusal(stderr)
    assert refusal.kind is RefusalKind.FAILED and refusal.field == ""
    assert refusal.message == f"Slurm refused: {stderr.strip()}"


def test_a_missing_script_is_told_apart() -> None:
    assert JobControl.script_unreadable(_sbatch("Unable to open file /home/alice/run.sh"))
    assert not JobControl.script_unreadable(_sbatch(f"{_FAILED}Invalid qos specification"))
