"""Job, reservation and inventory parsing and conversion, on output recorded on this
machine (Slurm 22.05) and on hand-made 23.11-shaped JSON (state lists, wrapped numbers)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcgate.server.api.convert.inventory import (
    node_state,
    node_to_proto,
    partition_to_proto,
    reservation_to_proto,
)
from hpcgate.server.api.convert.jobs import (
    job_to_proto,
    proto_state_to_slurm,
    state_to_proto,
)
from hpcgate.server.compute.jobs import JobReader
from hpcgate.server.slurm import SlurmError, SlurmUnavailable
from hpcgate.server.slurm.adapter import JobRecord, NodeInfo, merge_job
from hpcgate.server.slurm.parsing import (
    array_spec_contains,
    expand_hostlist,
    expand_output_path,
    job_matches,
    parse_nodes_json,
    parse_partitions,
    parse_reservations,
    parse_sacct,
    parse_squeue_json,
    select_jobs,
    split_job_id,
    summarise_job_state,
)
from hpcgate.v1 import compute_pb2

DATA = Path(__file__).parent / "data"
# The 22.05 squeue recording was taken 100 s after job 30 started.
RECORDED = datetime.fromtimestamp(1795241129 + 100, UTC)


def by_id(jobs: list[JobRecord]) -> dict[str, JobRecord]:
    return {j.job_id: j for j in jobs}


@pytest.fixture(scope="module")
def queue_22() -> dict[str, JobRecord]:
    return by_id(parse_squeue_json((DATA / "squeue-json-22.05.json").read_text(), RECORDED))


@pytest.fixture(scope="module")
def accounting_22() -> dict[str, JobRecord]:
    return by_id(parse_sacct((DATA / "sacct-parsable-22.05.txt").read_text()))


# --- squeue --json, 22.05 ---


def test_squeue_22_05_ended_jobs(queue_22: dict[str, JobRecord]) -> None:
    ok, failed, cancelled = queue_22["24"], queue_22["25"], queue_22["26"]
    assert (ok.state, ok.exit_code, ok.signal, ok.reason) == ("COMPLETED", 0, 0, "")
    # 22.05 gives the raw wait status: 768 = exit 3, 15 = killed by SIGTERM.
    assert (failed.state, failed.exit_code, failed.reason) == ("FAILED", 3, "NonZeroExitCode")
    assert (cancelled.state, cancelled.exit_code, cancelled.signal) == ("CANCELLED", 0, 15)
    assert ok.end_time is not None and ok.start_time is not None
    assert ok.user == "alice" and ok.uid == 1001 and ok.account == "alpha"
    assert ok.partition == "debug" and ok.qos == "normal" and ok.source == "queue"
    assert ok.time_limit_seconds == 3600 and ok.batch_host == "vm" and ok.node_list == "vm"
    # Default output file, which squeue leaves empty.
    assert ok.stdout_path == ok.stderr_path == "/home/alice/slurm-24.out"


def test_squeue_22_05_running_and_pending(queue_22: dict[str, JobRecord]) -> None:
    running = queue_22["30"]
    assert running.state == "RUNNING" and running.cpus == 2
    assert running.end_time is None  # squeue's end_time is only the expected end
    assert running.elapsed_seconds == 100
    assert running.allocated_tres == {"cpu": 2, "mem": 200, "node": 1, "billing": 2}
    dependent = queue_22["29"]
    assert dependent.state == "PENDING" and dependent.reason == "DependencyNeverSatisfied"
    assert dependent.dependency == "afterok:26"  # Slurm's `(failed)` note stripped
    assert dependent.start_time is dependent.end_time is dependent.eligible_time is None
    assert dependent.memory_per_node_mib == 300 and dependent.memory_per_cpu_mib == 0
    assert dependent.time_limit_seconds == 600 and dependent.node_list == ""
    assert dependent.allocated_tres == {} and dependent.partition == "long"
    assert queue_22["31"].user == "bob" and queue_22["31"].account == "beta"


def test_squeue_22_05_arrays(queue_22: dict[str, JobRecord]) -> None:
    tasks = {j.array_task_id: j for j in queue_22.values() if j.array_job_id == 27}
    assert {t: j.job_id for t, j in tasks.items()} == {0: "33", 1: "34", 2: "27"}
    assert tasks[1].stdout_path == "/home/alice/arr-27_1.out"
    assert tasks[1].array_task_spec == ""
    pending = queue_22["32"]
    assert pending.array_job_id == 32 and pending.array_task_id is None
    assert pending.array_task_spec == "0-9%2" and pending.reason == "BeginTime"
    assert pending.estimated_start_time is not None and pending.start_time is None
    assert pending.stdout_path == "/home/alice/slurm-32_%a.out"  # task index not known yet


def test_squeue_22_05_requested_resources_and_patterns(queue_22: dict[str, JobRecord]) -> None:
    stepped = queue_22["28"]
    assert stepped.stdout_path == "/home/alice/stepjob-28-alice.out"
    assert stepped.stderr_path == "/home/alice/stepjob-28.err"
    assert stepped.memory_per_cpu_mib == 200 and stepped.memory_per_node_mib == 0
    assert stepped.ntasks == 2 and stepped.cpus == 2 and stepped.cpus_per_task == 0
    assert stepped.requested_tres == {"cpu": 2, "mem": 400, "node": 1, "billing": 2}
    assert stepped.working_directory == "/home/alice" and stepped.priority > 0


def test_squeue_garbage_is_an_error() -> None:
    with pytest.raises(SlurmError):
        parse_squeue_json("squeue: error: something")
    with pytest.raises(SlurmError):
        parse_squeue_json('{"meta": {}}')


# --- squeue --json, 23.11 shape ---


def test_squeue_23_11_shape() -> None:
    now = datetime.fromtimestamp(1700000110, UTC)
    jobs = by_id(parse_squeue_json((DATA / "squeue-json-23.11.json").read_text(), now))
    train = jobs["1001"]
    assert train.state == "RUNNING" and train.elapsed_seconds == 100 and train.end_time is None
    assert (train.cpus, train.node_count, train.ntasks, train.cpus_per_task) == (4, 2, 2, 2)
    assert train.memory_per_node_mib == 16384 and train.memory_per_cpu_mib == 0
    assert train.requested_tres["mem"] == 32768 and train.requested_tres["gres/gpu"] == 2
    assert train.gres == "gres/gpu:a100:1" and train.constraints == "a100&ib"
    assert train.time_limit_seconds == 7200 and train.priority == 1234
    assert train.restart_count == 1 and train.array_job_id == 0 and train.array_task_id is None
    assert train.stdout_path == "/home/alice/run/train-1001.out"
    assert train.comment == "hpcgate-request:0123456789abcdef"

    sweep = jobs["1002"]
    assert sweep.state == "PENDING" and sweep.time_limit_seconds is None  # infinite
    assert sweep.array_job_id == 1002 and sweep.array_task_spec == "0-15%4"
    assert sweep.dependency == "afterok:1001" and sweep.memory_per_cpu_mib == 2048
    assert sweep.partition == "batch,gpu" and sweep.eligible_time is None

    task = jobs["997"]
    assert task.state == "COMPLETING" and task.state_flags == ("COMPLETING",)
    assert task.raw_state == "CANCELLED+COMPLETING" and task.signal == 9
    assert (task.array_job_id, task.array_task_id) == (990, 7)
    assert task.stdout_path == "/home/bob/out-990_7.txt"  # relative to the working directory
    assert task.stderr_path == "/home/bob/err-990_007.txt"
    assert task.end_time is not None and task.reservation == "maint" and task.priority == 0

    failed = jobs["998"]
    assert (failed.state, failed.exit_code, failed.signal) == ("FAILED", 3, 0)


def test_job_state_summary() -> None:
    assert summarise_job_state(["RUNNING"]) == ("RUNNING", ())
    assert summarise_job_state(["COMPLETING"]) == ("COMPLETING", ("COMPLETING",))
    assert summarise_job_state(["PENDING", "REQUEUE_HOLD"]) == ("PENDING", ("REQUEUE_HOLD",))
    assert summarise_job_state(["REQUEUE_HOLD"]) == ("PENDING", ("REQUEUE_HOLD",))  # 22.05
    assert summarise_job_state(["RUNNING", "CONFIGURING"])[0] == "CONFIGURING"
    assert summarise_job_state(["SOMETHING_NEW"])[0] == "SOMETHING_NEW"
    assert summarise_job_state([]) == ("UNKNOWN", ())


# --- sacct -P, 22.05 ---


def test_sacct_22_05_exit_codes_and_states(accounting_22: dict[str, JobRecord]) -> None:
    failed = accounting_22["25"]
    assert (failed.state, failed.exit_code, failed.source) == ("FAILED", 3, "accounting")
    cancelled = accounting_22["26"]
    assert cancelled.state == "CANCELLED" and cancelled.raw_state == "CANCELLED by 0"
    assert cancelled.steps[0].signal == 15 and cancelled.steps[0].state == "CANCELLED"
    assert (cancelled.exit_code, cancelled.signal) == (0, 15)  # the batch script's, as squeue
    ok = accounting_22["24"]
    assert ok.state == "COMPLETED" and ok.exit_code == 0 and ok.batch_host == "vm"
    assert ok.submit_time == datetime(2026, 11, 21, 6, 5, 29, tzinfo=UTC)  # machine in UTC
    assert ok.time_limit_seconds == 3600 and ok.elapsed_seconds == 0
    assert ok.requested_tres == {"billing": 1, "cpu": 1, "mem": 100, "node": 1}
    assert ok.user == "alice" and ok.uid == 1001 and ok.working_directory == "/home/alice"


def test_sacct_22_05_steps(accounting_22: dict[str, JobRecord]) -> None:
    stepped = accounting_22["28"]
    assert [(s.step_id, s.name) for s in stepped.steps] == [
        ("batch", "batch"),
        ("0", "hostname"),
        ("1", "sleep"),
    ]
    srun = stepped.steps[1]
    assert srun.ntasks == 2 and srun.node_list == "vm" and srun.node_count == 1
    assert srun.allocated_tres == {"cpu": 2, "mem": 400, "node": 1}
    assert srun.elapsed_seconds == 1 and srun.start_time is not None
    assert stepped.ntasks == 2  # from its srun steps: sacct has no job-level task count


def test_sacct_22_05_arrays_pending_and_free_text(accounting_22: dict[str, JobRecord]) -> None:
    tasks = {j.array_task_id: j.job_id for j in accounting_22.values() if j.array_job_id == 27}
    assert tasks == {0: "33", 1: "34", 2: "27"}
    pending = accounting_22["32"]
    assert pending.array_task_spec == "0-9%2" and pending.array_task_id is None
    assert pending.state == "PENDING" and pending.time_limit_seconds is None  # Partition_Limit
    assert pending.start_time is None and pending.node_list == "" and pending.steps == ()
    assert accounting_22["29"].reason == "DependencyNeverSatisfied"
    assert accounting_22["37"].comment == "hpcgate-request:abc123"
    # A job name with a newline is re-joined, and the records after it are intact.
    assert accounting_22["38"].job_name == "two\nlines"
    assert [s.name for s in accounting_22["38"].steps] == ["batch"]
    assert accounting_22["31"].user == "bob"


def test_sacct_memory_per_node_or_cpu() -> None:
    fields = "1|1|COMPLETED|0:0|None|a|1|x|p|q|Unknown|Unknown|Unknown|Unknown|0|5|1|n1|1|1||{mem}"
    tail = "|mem=4G||||0|/w||name"
    older = parse_sacct((fields + tail).format(mem="4Gn").replace("|", "\x1f"))[0]
    assert older.memory_per_node_mib == 4096 and older.memory_per_cpu_mib == 0
    per_cpu = parse_sacct((fields + tail).format(mem="100Mc").replace("|", "\x1f"))[0]
    assert per_cpu.memory_per_cpu_mib == 100 and per_cpu.time_limit_seconds == 300
    total_only = parse_sacct((fields + tail).format(mem="4G").replace("|", "\x1f"))[0]
    assert total_only.memory_per_node_mib == total_only.memory_per_cpu_mib == 0
    assert total_only.requested_tres == {"mem": 4096}


# --- merging ---


def test_merge_running_job_keeps_queue_state(
    queue_22: dict[str, JobRecord], accounting_22: dict[str, JobRecord]
) -> None:
    # The accounting record was taken after the job ended; the queue still says RUNNING.
    merged = merge_job(queue_22["30"], accounting_22["30"])
    assert merged.source == "merged" and merged.state == "RUNNING"
    assert merged.end_time is None and merged.elapsed_seconds == 100
    assert [s.step_id for s in merged.steps] == ["batch"]


def test_merge_ended_job_takes_accounting_end(
    queue_22: dict[str, JobRecord], accounting_22: dict[str, JobRecord]
) -> None:
    queue = replace(queue_22["28"], exit_code=0, end_time=None, stdout_path="/out")
    merged = merge_job(queue, accounting_22["28"])
    assert merged.end_time == accounting_22["28"].end_time
    assert len(merged.steps) == 3 and merged.stdout_path == "/out"
    assert merged.memory_per_cpu_mib == 200  # the queue's request details stay
    # Only one side known: that side, unchanged.
    assert merge_job(None, accounting_22["28"]) is accounting_22["28"]
    assert merge_job(queue_22["28"], None) is queue_22["28"]
    with pytest.raises(ValueError):
        merge_job(None, None)


def test_merge_fills_what_the_queue_leaves_empty() -> None:
    queue = JobRecord(job_id="5", state="RUNNING", user="alice")
    accounting = JobRecord(
        job_id="5",
        source="accounting",
        state="PENDING",
        reason="Priority",
        comment="c",
        constraints="x",
        exit_code=2,
    )
    merged = merge_job(queue, accounting)
    assert merged.state == "RUNNING" and merged.reason == "" and merged.exit_code == 0
    assert merged.comment == "c" and merged.constraints == "x"
    ended = replace(queue, state="CANCELLED", signal=15)
    stale = replace(accounting, state="CANCELLED", exit_code=0, end_time=datetime.now(UTC))
    merged = merge_job(ended, stale)
    assert (merged.exit_code, merged.signal) == (0, 15) and merged.end_time is not None
    assert (
        merge_job(replace(queue, state="FAILED"), replace(accounting, state="FAILED")).exit_code
        == 2
    )


# --- job ids, arrays, host lists, output patterns ---


def test_job_ids_and_matching(queue_22: dict[str, JobRecord]) -> None:
    assert split_job_id("123") == (123, None) and split_job_id("123_4") == (123, 4)
    for bad in ("", "abc", "12_", "_3", "1.batch", "1_2_3"):
        with pytest.raises(ValueError):
            split_job_id(bad)
    assert job_matches(queue_22["34"], "34") and job_matches(queue_22["34"], "27_1")
    assert not job_matches(queue_22["34"], "27") and job_matches(queue_22["27"], "27")
    assert job_matches(queue_22["32"], "32_7")  # still in the pending array record
    assert not job_matches(queue_22["32"], "32_10") and not job_matches(queue_22["32"], "x")


def test_array_specs() -> None:
    assert array_spec_contains("0-9%2", 9) and not array_spec_contains("0-9%2", 10)
    assert array_spec_contains("1,3,5-7", 6) and not array_spec_contains("1,3,5-7", 4)
    assert array_spec_contains("0-15:5", 10) and not array_spec_contains("0-15:5", 11)


def test_hostlists() -> None:
    assert expand_hostlist("vm") == ["vm"]
    assert expand_hostlist("nid[001-003,007],login1") == [
        "nid001",
        "nid002",
        "nid003",
        "nid007",
        "login1",
    ]
    assert expand_hostlist("r[1-2]n[1-2]") == ["r1n1", "r1n2", "r2n1", "r2n2"]
    assert expand_hostlist("") == [] and expand_hostlist("None assigned") == []
    assert expand_hostlist("odd[a-b]") == ["odd[a-b]"]
    assert len(expand_hostlist("n[1-1000000]", limit=50)) == 50


def test_output_patterns() -> None:
    # What slurmstepd made of this pattern on this machine (Slurm 22.05, job 35).
    got = expand_output_path(
        "/tmp/pt-%s-%J-%N-%n-%t-%a-%A-%5j-%%.out", job_id="35", user="alice", node="vm"
    )
    assert got == "/tmp/pt-batch-35-vm-0-0-4294967294-35-00035-%.out"
    task = expand_output_path(
        "out-%A_%3a-%u-%x.txt",
        job_id="36",
        array_job_id=30,
        array_task_id=3,
        user="alice",
        job_name="j",
        working_directory="/home/alice/",
    )
    assert task == "/home/alice/out-30_003-alice-j.txt"
    assert expand_output_path("/o/\\%j.out", job_id="1") == "/o/%j.out"
    assert expand_output_path("/o/%N.out", job_id="1") == "/o/%N.out"  # host not known yet


# --- reservations and nodes ---


def test_reservations_22_05() -> None:
    maint, team = parse_reservations((DATA / "scontrol-show-reservation-22.05.txt").read_text())
    assert maint.name == "maint" and maint.state == "INACTIVE"
    assert maint.flags == ("MAINT", "SPEC_NODES") and maint.users == ("alice",)
    assert maint.accounts == () and maint.partition == "" and maint.features == ""
    assert maint.duration_seconds == 3600 and maint.core_count == 8
    assert maint.start_time == datetime(2026, 11, 21, 7, 6, 32, tzinfo=UTC)
    assert team.state == "ACTIVE" and team.accounts == ("beta",) and team.users == ()
    assert team.partition == "debug" and team.core_count == 2 and team.flags == ()
    assert team.tres == {"cpu": 2}
    assert parse_reservations("No reservations in the system\n") == []


def test_nodes_22_05_details() -> None:
    (node,) = parse_nodes_json((DATA / "sinfo-json-reserved-22.05.json").read_text())
    assert node.states[:2] == ("IDLE", "RESERVED") and node.available
    assert node.cpu_load is not None and 0 <= node.cpu_load < 100
    assert node.free_memory_mb > 0 and node.alloc_memory_mb == 0
    assert (node.sockets, node.cores_per_socket, node.threads_per_core) == (8, 1, 1)
    assert node.architecture == "x86_64" and node.boot_time is not None
    assert node_state(node.states) == compute_pb2.NODE_STATE_RESERVED


def test_nodes_23_11_details() -> None:
    data = {
        "nodes": [
            {
                "name": "g1",
                "state": ["MIXED", "DRAIN"],
                "cpus": 64,
                "alloc_cpus": 16,
                "alloc_memory": 65536,
                "free_mem": {"set": True, "infinite": False, "number": 120000},
                "real_memory": 256000,
                "cpu_load": 1650,
                "features": ["a100", "ib"],
                "active_features": ["a100"],
                "gres": "gpu:a100:4",
                "gres_used": "gpu:a100:2(IDX:0-1)",
                "partitions": ["gpu"],
                "reason": "bad DIMM",
                "reason_set_by_user": "root",
                "reason_changed_at": {"set": True, "infinite": False, "number": 1700000000},
                "boot_time": {"set": True, "infinite": False, "number": 1690000000},
                "sockets": 2,
                "cores": 16,
                "threads": 2,
                "architecture": "x86_64",
            }
        ]
    }
    (node,) = parse_nodes_json(json.dumps(data))
    assert node.free_memory_mb == 120000 and node.cpu_load == 16.5
    assert node.features == ("a100", "ib") and node.active_features == ("a100",)
    assert node.reason_user == "root" and node.reason_time is not None
    msg = node_to_proto(node, "hpc", datetime.now(UTC))
    assert msg.state == compute_pb2.NODE_STATE_DRAINING and list(msg.state_flags) == ["DRAIN"]
    assert msg.raw_state == "MIXED+DRAIN" and msg.idle_cpus == 0  # draining: nothing usable
    assert msg.allocated_memory_mib == 65536 and msg.gres_used == "gpu:a100:2(IDX:0-1)"
    assert msg.name == "systems/hpc/nodes/g1" and msg.reason_time.seconds == 1700000000


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (("IDLE",), compute_pb2.NODE_STATE_IDLE),
        (("MIXED",), compute_pb2.NODE_STATE_MIXED),
        (("ALLOCATED", "COMPLETING"), compute_pb2.NODE_STATE_COMPLETING),
        (("IDLE", "DRAIN"), compute_pb2.NODE_STATE_DRAINED),
        (("ALLOCATED", "DRAIN"), compute_pb2.NODE_STATE_DRAINING),
        (("DOWN", "NOT_RESPONDING"), compute_pb2.NODE_STATE_DOWN),
        (("IDLE", "FAIL"), compute_pb2.NODE_STATE_FAIL),
        (("IDLE", "MAINTENANCE", "RESERVED"), compute_pb2.NODE_STATE_MAINTENANCE),
        (("IDLE", "POWERED_DOWN"), compute_pb2.NODE_STATE_POWERED_DOWN),
        (("IDLE", "POWERING_UP"), compute_pb2.NODE_STATE_POWERING_UP),
        (("FUTURE",), compute_pb2.NODE_STATE_FUTURE),
        (("UNKNOWN",), compute_pb2.NODE_STATE_UNKNOWN),
        (("BLINKING",), compute_pb2.NODE_STATE_OTHER),
    ],
)
def test_node_state_summary(states: tuple[str, ...], expected: int) -> None:
    assert node_state(states) == expected


# --- conversion to the API's messages ---


def test_job_to_proto(queue_22: dict[str, JobRecord], accounting_22: dict[str, JobRecord]) -> None:
    job = merge_job(queue_22["28"], accounting_22["28"])
    msg = job_to_proto(job, "local")
    assert msg.name == "systems/local/jobs/28" and msg.job_id == "28" and msg.system == "local"
    assert msg.state == compute_pb2.JOB_STATE_COMPLETED and msg.raw_state == "COMPLETED"
    assert msg.uid == 1001 and list(msg.nodes) == ["vm"] and msg.memory_per_cpu_mib == 200
    assert dict(msg.requested_tres) == {"cpu": 2, "mem": 400, "node": 1, "billing": 2}
    assert msg.time_limit.seconds == 3600 and msg.elapsed.seconds == 2
    assert msg.submit_time.seconds == 1795241129 and not msg.HasField("estimated_start_time")
    assert not msg.HasField("array_task_id") and msg.array_job_id == 0
    assert [s.step_id for s in msg.steps] == ["batch", "0", "1"]
    assert msg.steps[1].ntasks == 2 and msg.steps[1].state == compute_pb2.JOB_STATE_COMPLETED
    assert not job_to_proto(job, "local", include_steps=False).steps

    task = job_to_proto(queue_22["33"], "local")
    assert task.array_job_id == 27 and task.HasField("array_task_id") and task.array_task_id == 0
    pending = job_to_proto(queue_22["32"], "local")
    assert pending.array_task_spec == "0-9%2" and not pending.HasField("start_time")
    assert pending.HasField("estimated_start_time") and not pending.nodes


def test_job_states_both_ways() -> None:
    assert state_to_proto("RUNNING") == compute_pb2.JOB_STATE_RUNNING
    assert state_to_proto("out_of_memory") == compute_pb2.JOB_STATE_OUT_OF_MEMORY
    assert state_to_proto("REVOKED") == compute_pb2.JOB_STATE_OTHER
    for value in compute_pb2.JobState.values():
        if value in (compute_pb2.JOB_STATE_UNSPECIFIED, compute_pb2.JOB_STATE_OTHER):
            with pytest.raises(ValueError):
                proto_state_to_slurm(value)
        else:
            assert state_to_proto(proto_state_to_slurm(value)) == value
    other = job_to_proto(JobRecord(job_id="9", state="REVOKED", raw_state="REVOKED"), "s")
    assert other.state == compute_pb2.JOB_STATE_OTHER and other.raw_state == "REVOKED"


def test_partition_figures(queue_22: dict[str, JobRecord]) -> None:
    partitions = parse_partitions((DATA / "scontrol-show-partition-22.05.txt").read_text())
    busy = NodeInfo("vm", ("MIXED",), 8, 3, 8000, ("debug", "long"))
    drained = NodeInfo("vm2", ("IDLE", "DRAIN"), 4, 0, 4000, ("debug",), gres="gpu:2(S:0,1)")
    now = datetime.now(UTC)
    jobs = list(queue_22.values())
    debug = partition_to_proto(partitions[0], [busy, drained], jobs, "local", now)
    assert debug.name == "systems/local/partitions/debug" and debug.is_default
    assert debug.state == compute_pb2.PARTITION_STATE_UP
    assert (debug.idle_nodes, debug.allocated_nodes, debug.unavailable_nodes) == (0, 1, 1)
    assert (debug.idle_cpus, debug.allocated_cpus, debug.unavailable_cpus) == (5, 3, 4)
    assert debug.max_time.seconds == 3600 and debug.default_time.seconds == 3600
    assert debug.max_nodes == 0 and debug.max_memory_per_node_mib == 0
    assert not debug.allowed_accounts and not debug.allowed_groups and debug.qos == ""
    assert debug.priority_tier == 1 and list(debug.gres) == ["gpu:2(S:0,1)"]
    # From the recorded queue: 32 pending in debug, 30 and 31 running there.
    assert (debug.pending_jobs, debug.running_jobs) == (1, 2)
    long = partition_to_proto(partitions[1], [busy], jobs, "local", now)
    assert long.max_time.seconds == 2 * 86400 and long.pending_jobs == 1
    assert long.total_cpus == 8 and long.unavailable_nodes == 0


def test_reservation_core_count_only_for_partial_nodes() -> None:
    maint, team = parse_reservations((DATA / "scontrol-show-reservation-22.05.txt").read_text())
    (node,) = parse_nodes_json((DATA / "sinfo-json-reserved-22.05.json").read_text())
    now = maint.start_time - timedelta(minutes=1) if maint.start_time else datetime.now(UTC)
    whole = reservation_to_proto(maint, [node], "local", now)
    assert whole.core_count == 0 and whole.node_count == 1 and whole.node_list == "vm"
    assert whole.state == compute_pb2.RESERVATION_STATE_INACTIVE
    assert whole.duration.seconds == 3600 and list(whole.flags) == ["MAINT", "SPEC_NODES"]
    partial = reservation_to_proto(team, [node], "local", now)
    assert partial.core_count == 2 and dict(partial.tres) == {"cpu": 2}
    assert partial.state == compute_pb2.RESERVATION_STATE_ACTIVE
    assert partial.name == "systems/local/reservations/teamb"


# --- JobReader over recorded data: which calls, how merged ---


class RecordedAdapter:
    """queue_jobs/accounting_jobs answered from the 22.05 recordings, counting calls."""

    def __init__(self, queue: list[JobRecord], accounting: list[JobRecord]) -> None:
        self.queue, self.accounting = queue, accounting
        self.calls: list[str] = []
        self.accounting_fails = False

    async def queue_jobs(
        self, job_ids: Sequence[str] = (), users: Sequence[str] = ()
    ) -> list[JobRecord]:
        self.calls.append("squeue")
        return [
            j
            for j in self.queue
            if (not job_ids or any(job_matches(j, i) for i in job_ids))
            and (not users or j.user in users)
        ]

    async def accounting_jobs(
        self,
        job_ids: Sequence[str] = (),
        users: Sequence[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        steps: bool = True,
    ) -> list[JobRecord]:
        self.calls.append("sacct")
        if self.accounting_fails:
            raise SlurmUnavailable("slurmdbd does not answer")
        return [
            j if steps else replace(j, steps=())
            for j in self.accounting
            if (not job_ids or any(job_matches(j, i) for i in job_ids))
            and (not users or j.user in users)
        ]


@pytest.fixture
def recorded(
    queue_22: dict[str, JobRecord], accounting_22: dict[str, JobRecord]
) -> RecordedAdapter:
    return RecordedAdapter(list(queue_22.values()), list(accounting_22.values()))


def reader(adapter: RecordedAdapter) -> JobReader:
    return JobReader(adapter)  # type: ignore[arg-type]  # only the two job calls


async def get(adapter: RecordedAdapter, job_id: str) -> JobRecord | None:
    """JobReader.get without a hub: the record alone (no revision to report)."""
    view = await reader(adapter).get(job_id)
    assert view is None or (view.revision, view.updated_at) == (0, None)
    return None if view is None else view.record


async def listed(adapter: RecordedAdapter, *args: Any, **kwargs: Any) -> list[JobRecord]:
    return [v.record for v in await reader(adapter).list(*args, **kwargs)]


async def test_reader_get_pending_running_and_forgotten(recorded: RecordedAdapter) -> None:
    pending = await get(recorded, "29")
    assert pending is not None and pending.source == "queue" and recorded.calls == ["squeue"]
    recorded.calls.clear()
    running = await get(recorded, "30")
    assert running is not None and running.source == "merged" and running.state == "RUNNING"
    assert running.steps and recorded.calls == ["squeue", "sacct"]
    # The controller has forgotten jobs 36-38: accounting alone.
    recorded.calls.clear()
    old = await get(recorded, "36_3")
    assert old is not None and old.job_id == "36" and old.source == "accounting"
    assert recorded.calls == ["squeue", "sacct"]
    assert await get(recorded, "4242") is None
    with pytest.raises(ValueError):
        await get(recorded, "x")


async def test_reader_get_survives_accounting_outage_for_queued_jobs(
    recorded: RecordedAdapter,
) -> None:
    recorded.accounting_fails = True
    job = await get(recorded, "30")
    assert job is not None and job.source == "queue" and job.steps == ()
    with pytest.raises(SlurmUnavailable):
        await get(recorded, "37")  # not queued: unknown without accounting


async def test_reader_list_window_and_users(recorded: RecordedAdapter) -> None:
    submitted = datetime(2026, 11, 21, 6, 5, 29, tzinfo=UTC)
    jobs = await listed(recorded, ["alice"], submitted, None, include_steps=False)
    assert sorted(recorded.calls) == ["sacct", "squeue"]
    ids = [j.job_id for j in jobs]
    assert ids == sorted(ids, key=int, reverse=True) and "31" not in ids
    assert {"24", "25", "28", "29", "30", "32", "37", "38"} <= set(ids)
    assert all(j.steps == () for j in jobs if j.source == "accounting")
    assert next(j for j in jobs if j.job_id == "28").source == "merged"
    # A later window keeps only jobs that have not ended (the pending 29 and 32, and 30,
    # which the recorded queue still shows running).
    later = await listed(recorded, ["alice"], submitted + timedelta(hours=1), None)
    assert {j.job_id for j in later} == {"29", "30", "32"}
    everyone = await listed(recorded, None, submitted, None)
    assert "31" in {j.job_id for j in everyone}
    assert await listed(recorded, [], submitted, None) == []


async def test_reader_find_by_comment(recorded: RecordedAdapter) -> None:
    assert await reader(recorded).find_by_comment("alice", "hpcgate-request:abc123") == "37"
    assert recorded.calls == ["squeue", "sacct"]
    assert await reader(recorded).find_by_comment("bob", "hpcgate-request:abc123") is None


_job_numbers = st.integers(min_value=1, max_value=6)
_records = st.builds(
    JobRecord,
    job_id=_job_numbers.map(str),
    array_job_id=st.sampled_from([0, 1, 2, 3]),
    array_task_id=st.none() | st.integers(min_value=0, max_value=5),
    array_task_spec=st.sampled_from(["", "0-3", "1,4-5%2", "0-5:2"]),
    user=st.sampled_from(["alice", "bob"]),
)
_wanted = st.one_of(
    _job_numbers.map(str),
    st.tuples(st.integers(0, 3), st.integers(0, 5)).map(lambda t: f"{t[0]}_{t[1]}"),
    st.sampled_from(["", "x", "1_", "-1"]),
)


@given(
    jobs=st.lists(_records, max_size=12),
    job_ids=st.lists(_wanted, max_size=5),
    users=st.lists(st.sampled_from(["alice", "bob", "carol"]), max_size=2),
)
def test_select_jobs_matches_job_matches(
    jobs: list[JobRecord], job_ids: list[str], users: list[str]
) -> None:
    """The linear selection answers what asking job_matches for every pair would."""
    expected = [
        j
        for j in jobs
        if (not job_ids or any(job_matches(j, w) for w in job_ids))
        and (not users or j.user in users)
    ]
    assert select_jobs(jobs, job_ids, users) == expected
