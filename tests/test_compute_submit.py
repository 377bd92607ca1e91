"""SubmitJob's validation and sbatch command line, without Slurm."""

from __future__ import annotations

import pytest

from hpcgate.server.api.errors import FieldViolations
from hpcgate.server.api.submit_request import build_submission, parse_time_limit
from hpcgate.server.slurm import PartitionInfo
from hpcgate.server.slurm.job_control import JobControl
from hpcgate.v1 import compute_pb2

PARTS = [
    PartitionInfo("debug", "UP", "vm", 1, 8, is_default=True),
    PartitionInfo("long", "UP", "vm", 1, 8),
]


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("30", 30),
        ("30:30", 31),
        ("01:00:00", 60),
        ("2-0", 2880),
        ("1-01:30", 1530),
        ("1-00:00:01", 1441),
        ("UNLIMITED", None),
    ],
)
def test_time_limit_forms(text: str, minutes: int | None) -> None:
    assert parse_time_limit(text) == minutes


@pytest.mark.parametrize("text", ["", "abc", "1:2:3:4", "-5", "1-", "0", "00:00"])
def test_bad_time_limits(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time_limit(text)


def build(request: compute_pb2.SubmitJobRequest, parts: list[PartitionInfo] = PARTS):
    errors = FieldViolations()
    sub = build_submission(request, parts, 1024, errors, JobControl())
    return sub, {f for f, _ in errors.violations}


def test_structured_options_come_after_extras_so_they_win() -> None:
    request = compute_pb2.SubmitJobRequest(
        script="#!/bin/bash\necho hi\n",
        options=compute_pb2.JobOptions(
            job_name="j",
            partition="long",
            nodes=2,
            ntasks=4,
            cpus_per_task=2,
            memory_per_cpu_mib=500,
            time_limit="1-00:00",
            array="0-3%2",
            dependency="afterok:12:13",
            extra_arguments=["--partition=debug", "--mail-type=END"],
            environment={"FOO": "bar"},
        ),
    )
    sub, bad = build(request)
    assert not bad
    argv = sub.argv("c")
    assert argv[:3] == ["sbatch", "--parsable", "--comment=c"]
    assert argv.index("--partition=debug") < argv.index("--partition=long")
    assert {
        "--nodes=2",
        "--ntasks=4",
        "--cpus-per-task=2",
        "--mem-per-cpu=500M",
        "--time=1440",
        "--array=0-3%2",
        "--dependency=afterok:12:13",
        "--export=ALL",
    } <= set(argv)
    assert argv[-1] == "--export=ALL" and sub.environment == {"FOO": "bar"}  # script on stdin
    sub.script_arguments = ["a b"]
    assert sub.argv(None)[-2:] == ["/dev/stdin", "a b"]


def test_every_bad_field_is_reported_at_once() -> None:
    request = compute_pb2.SubmitJobRequest(
        script="echo no shebang",
        options=compute_pb2.JobOptions(
            job_name="two words",
            partition="nope",
            memory_per_cpu_mib=0,
            time_limit="soon",
            gpus="many",
            array="x",
            dependency="after everything",
            working_directory="rel",
            extra_arguments=["--uid=0", "-p", "--mem=5G"],
            environment={"SLURM_X": "1"},
        ),
    )
    _, bad = build(request)
    assert bad == {
        "script",
        "options.job_name",
        "options.partition",
        "options.memory_per_cpu_mib",
        "options.time_limit",
        "options.gpus",
        "options.array",
        "options.dependency",
        "options.working_directory",
        "options.extra_arguments[0]",
        "options.extra_arguments[1]",
        "options.extra_arguments[2]",
        "options.environment[SLURM_X]",
    }


def test_script_size_and_missing_default_partition() -> None:
    big = compute_pb2.SubmitJobRequest(script="#!/bin/sh\n" + "x" * 2000)
    assert build(big)[1] == {"script"}
    no_default = [PartitionInfo("a", "UP", "", 0, 0), PartitionInfo("b", "UP", "", 0, 0)]
    _, bad = build(compute_pb2.SubmitJobRequest(script="#!/bin/sh\n"), no_default)
    assert bad == {"options.partition"}
    assert build(compute_pb2.SubmitJobRequest())[1] == {"script"}


def test_script_path_and_arguments() -> None:
    sub, bad = build(
        compute_pb2.SubmitJobRequest(script_path="/home/a/run.sh", script_arguments=["--in", "x y"])
    )
    assert not bad and sub.argv(None)[-3:] == ["/home/a/run.sh", "--in", "x y"]
    assert build(compute_pb2.SubmitJobRequest(script_path="run.sh"))[1] == {"script_path"}


def _sbatch_error(*lines: str) -> str:
    return "".join(f"sbatch: error: {line}\n" for line in lines)


_POLICY = "Batch job submission failed: Job violates accounting/QOS policy (job submit limit, \
user's size and/or time limits)"


@pytest.mark.parametrize(
    ("stderr", "code", "field"),
    # sbatch's stderr as Slurm 22.05 prints it: the QOSMaxSubmitJobPerUser, AssocMaxSubmitJob
    # and QOSMaxWallDurationPerJob cases were captured on the test cluster (test_compute.py
    # hits them for real); the other reasons are Slurm's names of the same kind.
    [
        (_sbatch_error("QOSMaxSubmitJobPerUserLimit", _POLICY), "RESOURCE_EXHAUSTED", ""),
        (_sbatch_error("AssocMaxSubmitJobLimit", _POLICY), "RESOURCE_EXHAUSTED", ""),
        (_sbatch_error("AssocGrpSubmitJobsLimit", _POLICY), "RESOURCE_EXHAUSTED", ""),
        (_sbatch_error(_POLICY), "RESOURCE_EXHAUSTED", ""),
        (
            _sbatch_error("QOSMaxWallDurationPerJobLimit", _POLICY),
            "INVALID_ARGUMENT",
            "options.time_limit",
        ),
        (_sbatch_error("QOSMaxCpuPerJobLimit", _POLICY), "INVALID_ARGUMENT", "options"),
        (
            _sbatch_error(
                "Batch job submission failed: Invalid account or account/partition "
                "combination specified"
            ),
            "PERMISSION_DENIED",
            "",
        ),
        (
            _sbatch_error("Batch job submission failed: Invalid partition name specified"),
            "INVALID_ARGUMENT",
            "options.partition",
        ),
        (
            _sbatch_error("Batch job submission failed: Node count specification invalid"),
            "INVALID_ARGUMENT",
            "options.nodes",
        ),
        (_sbatch_error("Batch job submission failed: Something new"), "FAILED_PRECONDITION", ""),
    ],
)
def test_sbatch_refusals_map_to_canonical_codes(stderr: str, code: str, field: str) -> None:
    from hpcgate.server.api.compute import refused
    from hpcgate.server.slurm.job_control import JobControl

    error = refused(JobControl.submit_refusal(stderr))
    assert error.code.name == code, error.message
    assert error.message.count("sbatch: error:") == 0 and "Slurm refused the job: " in error.message
    assert stderr.splitlines()[0].removeprefix("sbatch: error: ") in error.message
    if field:
        assert [f for f, _ in error.violations] == [field]


def test_sbatch_and_scancel_command_lines_honour_bin_dir_and_cluster() -> None:
    from pathlib import Path

    from hpcgate.server.slurm.job_control import JobControl, RefusalKind

    jobs = JobControl(Path("/opt/slurm/bin"), "perlmutter")
    assert jobs.submit_argv(["--job-name=x"], comment="c1") == [
        "/opt/slurm/bin/sbatch", "-M", "perlmutter", "--parsable", "--comment=c1", "--job-name=x",
    ]  # fmt: skip
    assert jobs.submit_argv([], script_path="/home/a/run.sh", script_arguments=["1"])[-2:] == [
        "/home/a/run.sh", "1",
    ]  # fmt: skip
    assert jobs.cancel_argv("42", signal="USR1", batch_only=True) == [
        "/opt/slurm/bin/scancel", "-M", "perlmutter", "--signal=USR1", "--batch", "42",
    ]  # fmt: skip
    assert JobControl().cancel_argv("42") == ["scancel", "42"]
    assert JobControl.submitted_job_id("1234;perlmutter\n") == "1234"
    assert JobControl.submitted_job_id("sbatch: warning\n") is None
    down = "sbatch: error: Batch job submission failed: Unable to contact slurm controller"
    assert JobControl.submit_refusal(down).kind is RefusalKind.UNAVAILABLE
    assert JobControl.cancel_refusal("scancel: error: Kill job error on job id 42: Invalid "
                                     "job id specified").kind is RefusalKind.FAILED  # fmt: skip
