"""The pyslurm adapter, on stand-in objects: NOT a substitute for a live test.

pyslurm builds only against the libslurm of its own release, and this machine runs
Slurm 22.05; tests/test_pyslurm_live.py runs pyslurm 24.11 against a live Slurm 24.11
in the root of scripts/slurm24.sh. These tests check what can be checked without one:

- the translation functions, on `SimpleNamespace` stand-ins with the attribute names and
  value conventions of pyslurm 25.11.2 as read in its sdist (core/job/job.pyx,
  core/node.pyx, core/partition.pyx, core/reservation.pyx, db/job.pyx, db/step.pyx,
  db/tres.pyx, db/assoc.pyx, utils/uint.pyx, utils/ctime.pyx): None for unset numbers
  and strings (u32_parse, _raw_time, cstr.to_unicode; u32_parse also makes array task
  0 None), the string UNLIMITED for infinite, Unix timestamps, MiB, exit code and signal
  decoded from the wait status;
- the same for pyslurm 24.11.0 (its sdist: the same objects without the TRES
  attributes, db.Job without stdout/stderr/requeue count, the old API's dicts of
  deprecated.pyx for TRES, reservations, ping and version);
- field-by-field parity with the command-line adapter: the stand-ins are built from the
  same recorded Slurm 22.05 data the command-line parsers read (tests/data), converting
  each value the way pyslurm would, and both results are compared;
- the adapter's plumbing (worker calls, time-outs, error mapping, filters) with a fake
  `pyslurm` module of either release, and the factory's refusal when pyslurm is not
  installed.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hpcgate.server.api.convert.inventory import node_to_proto, partition_to_proto
from hpcgate.server.config import ConfigError, SlurmConfig, SystemConfig
from hpcgate.server.slurm import pyslurm_adapter as pa
from hpcgate.server.slurm.adapter import SlurmError, SlurmUnavailable
from hpcgate.server.slurm.factory import make_adapter
from hpcgate.server.slurm.parsing import (
    SACCT_DELIMITER,
    SACCT_FIELDS,
    parse_key_values,
    parse_nodes_json,
    parse_partitions,
    parse_reservations,
    parse_sacct,
    parse_squeue_json,
    parse_tres,
)

DATA = Path(__file__).parent / "data"
NO_VAL = 0xFFFFFFFE
UNLIMITED = "UNLIMITED"


# --- pyslurm 25.11.2 conversions, applied to recorded 22.05 data ---


def _str(value: Any) -> str | None:
    """cstr.to_unicode: NULL, "" and "None" all read as None."""
    return None if value in (None, "", "None") else str(value)


def _num(value: Any, zero_is_noval: bool = True) -> Any:
    """u32_parse with its defaults."""
    if value is None or value == NO_VAL or (value == 0 and zero_is_noval):
        return None
    if value == NO_VAL + 1:
        return UNLIMITED
    return value


def _raw_time(value: Any, on_noval: Any = None) -> Any:
    return on_noval if value in (None, 0, NO_VAL) else value


def _exit_code(status: int) -> tuple[int, int]:
    """helpers._get_exit_code (os.WIFSIGNALED / WEXITSTATUS, minus 128 above 128)."""
    if os.WIFSIGNALED(status):
        return 0, os.WTERMSIG(status)
    code = os.WEXITSTATUS(status)
    return (code - 128 if code >= 128 else code), 0


def tres(text: str | None) -> Any:
    """TrackableResources.from_cstr: None for an empty string; cpu, mem (dehumanized to
    MiB), node, billing, ... as attributes; gres/fs/license/... as dicts of objects with
    `type_and_name` and `count`."""
    if not text:
        return None
    out = SimpleNamespace(
        **dict.fromkeys(("cpu", "mem", "energy", "node", "billing", "vmem", "pages")),
        gres={},
        fs={},
        license={},
        interconnect={},
        other={},
    )
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}
    for item in text.split(","):
        key, _, raw = item.partition("=")
        count = round(float(raw[:-1]) * units[raw[-1]]) if raw[-1] in units else int(raw)
        if "/" in key:
            kind, name = key.split("/", 1)
            getattr(out, kind)[name] = SimpleNamespace(type_and_name=key, count=count)
        else:
            setattr(out, key, SimpleNamespace(type_and_name=key, count=count))
    return out


def _dependencies(text: str) -> dict[str, Any] | None:
    """core/job/util.pyx dependency_str_to_dict."""
    if not text:
        return None
    kinds = ("after", "afterany", "afterburstbuffer", "aftercorr", "afternotok", "afterok")
    out: dict[str, Any] = {k: [] for k in kinds} | {"singleton": False, "satisfy": "all"}
    delim = "?" if "?" in text else ","
    if delim == "?":
        out["satisfy"] = "any"
    for item in text.split(delim):
        if item == "singleton":
            out["singleton"] = True
        kind, sep, jobs = item.partition(":")
        if sep and kind in out:
            out[kind] += [int(j) if j.isdigit() else j for j in jobs.split(":")]
    return out


def _slurm_path(job: dict[str, Any], pattern: str) -> str:
    """Slurm 25.11's slurm_get_job_stdout/_fname_format (src/api/job_info.c), which
    pyslurm's Job.standard_output calls: %A %a %j %u %x expanded, %% kept as %, other
    patterns left alone, relative paths put under the working directory."""
    task = job["array_task_id"] if job["array_task_id"] is not None else NO_VAL
    if not pattern:
        pattern = "slurm-%A_%a.out" if job["array_job_id"] else "slurm-%j.out"
    values = {
        "A": str(job["job_id"] if task == NO_VAL else job["array_job_id"]),
        "a": str(task),
        "j": str(job["job_id"]),
        "u": job["user_name"],
        "x": job["name"],
    }
    path = re.sub(r"%([%Aajux])", lambda m: values.get(m.group(1), "%"), pattern)
    return path if path.startswith("/") else f"{job['current_working_directory']}/{path}"


def queue_job(job: dict[str, Any]) -> SimpleNamespace:
    """A pyslurm.Job for one job of `squeue --json` (22.05): the same slurm_job_info_t
    read through pyslurm's properties."""
    task_string = job["array_task_string"] or ""
    waiting, _, parallel = task_string.partition("%")
    exit_code, signal = _exit_code(job["exit_code"])
    return SimpleNamespace(
        id=job["job_id"],
        name=_str(job["name"]),
        state=job["job_state"],  # slurm_job_state_string: one word
        state_reason=_str(job["state_reason"]),
        user_id=job["user_id"],
        user_name=job["user_name"],
        account=_str(job["account"]),
        partition=_str(job["partition"]),
        qos=_str(job["qos"]),
        array_id=_num(job["array_job_id"]),
        array_task_id=_num(job["array_task_id"]),  # null (NO_VAL) and task 0 give None
        array_tasks_waiting=waiting or None,
        array_tasks_parallel=int(parallel) if parallel else None,
        exit_code=exit_code,
        exit_code_signal=signal,
        submit_time=_raw_time(job["submit_time"]),
        eligible_time=_raw_time(job["eligible_time"]),
        start_time=_raw_time(job["start_time"]),
        end_time=_raw_time(job["end_time"]),
        suspend_time=_raw_time(job["suspend_time"]),
        pre_suspension_time=_raw_time(job["pre_sus_time"]),
        time_limit=_raw_time(job["time_limit"]),
        num_nodes=_num(job["node_count"]),
        allocated_nodes=_str(job["nodes"]),
        cpus=job["cpus"],
        ntasks=job["tasks"],
        cpus_per_task=job["cpus_per_task"] or 1,  # u16_parse(..., on_noval=1)
        memory_per_node=job["memory_per_node"],
        memory_per_cpu=job["memory_per_cpu"],
        requested_tres=tres(job["tres_req_str"]),
        allocated_tres=tres(job["tres_alloc_str"]),
        gres_per_node={},  # cstr.to_gres_dict("") (no GRES in this recording)
        working_directory=job["current_working_directory"],
        batch_host=_str(job["batch_host"]),
        standard_output=_slurm_path(job, job["standard_output"]),
        standard_error=_slurm_path(job, job["standard_error"] or job["standard_output"]),
        dependencies=_dependencies(job["dependency"]),
        reservation=_str(job["resv_name"]),
        constraints=[f for f in job["features"].split(",") if f],
        priority=job["priority"],
        requeue_count=job["restart_cnt"],
        comment=_str(job["comment"]),
    )


def _epoch(text: str) -> int | None:
    """A time sacct printed (local time) as the Unix time slurmdbd holds."""
    return None if text in ("Unknown", "") else int(datetime.fromisoformat(text).timestamp())


def _sacct_rows() -> list[dict[str, str]]:
    text = (DATA / "sacct-parsable-22.05.txt").read_text()
    records: list[str] = []
    for line in text.rstrip("\n").split("\n"):
        if re.match(r"^\d+[\w.+]*\x1f", line) or not records:
            records.append(line)
        else:
            records[-1] += "\n" + line
    return [
        dict(zip(SACCT_FIELDS, r.split(SACCT_DELIMITER, len(SACCT_FIELDS) - 1), strict=True))
        for r in records
    ]


def db_step(row: dict[str, str]) -> SimpleNamespace:
    """A pyslurm.db.JobStep for one step row of the same recording."""
    step_id = row["JobIDRaw"].split(".", 1)[1]
    code, _, signal = row["ExitCode"].partition(":")
    return SimpleNamespace(
        id=int(step_id) if step_id.isdigit() else step_id,  # humanize_step_id
        name=_str(row["JobName"]),
        state=row["State"].split()[0],
        exit_code=int(code),
        exit_code_signal=int(signal),
        start_time=_epoch(row["Start"]),
        end_time=_epoch(row["End"]),
        elapsed_time=_raw_time(int(row["ElapsedRaw"])),
        num_nodes=_num(int(row["NNodes"])),
        nodelist=_str(row["NodeList"]),
        ntasks=_num(int(row["NTasks"])),
        tres=tres(row["AllocTRES"]),
    )


def _hex_mask(ranges: str) -> str:
    """An array's waiting tasks as slurmdbd keeps them: `0-3,8` -> `0x10F`."""
    mask = 0
    for item in filter(None, ranges.split(",")):
        first, _, last = item.partition("-")
        for task in range(int(first), int(last or first) + 1):
            mask |= 1 << task
    return hex(mask).upper().replace("0X", "0x")


def _tres_count(text: str, name: str) -> int:
    """TrackableResources.find_count_in_str: 0 for an empty string or a missing TRES."""
    return int(dict(i.split("=") for i in text.split(",") if i).get(name, "0").rstrip("M"))


def db_job(row: dict[str, str], steps: list[dict[str, str]]) -> SimpleNamespace:
    """A pyslurm.db.Job for one job row of `sacct -P` (22.05) and its step rows."""
    array = re.match(r"^(\d+)_(?:(\d+)|\[(.*)\])$", row["JobID"])
    waiting, _, parallel = (array.group(3) or "").partition("%") if array else ("", "", "")
    code, _, signal = row["ExitCode"].partition(":")
    limit = row["TimelimitRaw"]
    return SimpleNamespace(
        id=int(row["JobIDRaw"]),
        name=_str(row["JobName"]),
        state=row["State"].split()[0],  # slurm_job_state_string: no "by <uid>"
        state_reason=_str(row["Reason"]),
        user_id=int(row["UID"]),
        user_name=row["User"],
        account=_str(row["Account"]),
        partition=_str(row["Partition"]),
        qos=_str(row["QOS"]),
        array_id=int(array.group(1)) if array else None,
        array_task_id=_num(int(array.group(2))) if array and array.group(2) else None,
        array_tasks_waiting=_hex_mask(waiting) if waiting else None,  # a bitmap in slurmdbd
        array_tasks_parallel=int(parallel) if parallel else None,
        exit_code=int(code),
        exit_code_signal=int(signal),
        submit_time=_epoch(row["Submit"]),
        eligible_time=_epoch(row["Eligible"]),
        start_time=_epoch(row["Start"]),
        end_time=_epoch(row["End"]),
        elapsed_time=_raw_time(int(row["ElapsedRaw"])),
        time_limit=int(limit) if limit.isdigit() else "PartitionLimit",
        # From the allocated TRES; 0 (not the request) for a job that never ran.
        num_nodes=_tres_count(row["AllocTRES"], "node"),
        nodelist=row["NodeList"],  # slurmdbd stores "None assigned" for pending jobs
        cpus=_tres_count(row["AllocTRES"], "cpu"),
        requested_tres=tres(row["ReqTRES"]),
        allocated_tres=tres(row["AllocTRES"]),
        working_directory=_str(row["WorkDir"]),
        standard_output=None,  # not in the recording (sacct was not asked for it)
        standard_error=None,
        reservation=_str(row["Reservation"]),
        constraints=[c for c in row["Constraints"].split(",") if c],
        priority=int(row["Priority"]),
        requeue_count=0,
        comment=_str(row["Comment"]),
        steps={(s := db_step(r)).id: s for r in steps},
    )


def db_jobs() -> list[SimpleNamespace]:
    rows = _sacct_rows()
    steps: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        job_id, dot, _ = row["JobIDRaw"].partition(".")
        if dot:
            steps.setdefault(job_id, []).append(row)
    return [db_job(r, steps.get(r["JobIDRaw"], [])) for r in rows if "." not in r["JobIDRaw"]]


def _differences(mine: Any, theirs: Any) -> dict[str, tuple[Any, Any]]:
    return {
        f.name: (getattr(mine, f.name), getattr(theirs, f.name))
        for f in fields(mine)
        if getattr(mine, f.name) != getattr(theirs, f.name)
    }


# --- Jobs ---


def test_queue_jobs_match_the_command_line_adapter_field_by_field() -> None:
    text = (DATA / "squeue-json-22.05.json").read_text()
    now = datetime.fromtimestamp(1795241200, UTC)
    cli = {j.job_id: j for j in parse_squeue_json(text, now)}
    raw = json.loads(text)["jobs"]
    assert len(raw) == len(cli) == 11
    for job in raw:
        mine = pa.job_record_from_pyslurm(queue_job(job), now)
        theirs = cli[str(job["job_id"])]
        # pyslurm reports 1 CPU per task where Slurm keeps "not set"; squeue says null.
        assert mine.cpus_per_task == 1 and theirs.cpus_per_task == 0
        assert _differences(replace(mine, cpus_per_task=0), theirs) == {}, job["job_id"]


def test_queue_job_details() -> None:
    raw = {
        str(j["job_id"]): j
        for j in json.loads((DATA / "squeue-json-22.05.json").read_text())["jobs"]
    }
    now = datetime.fromtimestamp(1795241200, UTC)
    failed = pa.job_record_from_pyslurm(queue_job(raw["25"]), now)
    assert (failed.state, failed.exit_code, failed.signal) == ("FAILED", 3, 0)
    assert failed.reason == "NonZeroExitCode" and failed.memory_per_cpu_mib == 100
    assert failed.requested_tres == {"cpu": 1, "mem": 100, "node": 1, "billing": 1}
    cancelled = pa.job_record_from_pyslurm(queue_job(raw["26"]), now)
    assert (cancelled.state, cancelled.exit_code, cancelled.signal) == ("CANCELLED", 0, 15)
    pending = pa.job_record_from_pyslurm(queue_job(raw["32"]), now)
    assert pending.array_task_spec == "0-9%2" and pending.array_task_id is None
    assert pending.start_time is None and pending.estimated_start_time is not None
    assert pending.stdout_path == "/home/alice/slurm-32_%a.out"
    dependent = pa.job_record_from_pyslurm(queue_job(raw["29"]), now)
    assert dependent.dependency == "afterok:26" and dependent.memory_per_node_mib == 300
    named = pa.job_record_from_pyslurm(queue_job(raw["28"]), now)
    assert named.stdout_path == "/home/alice/stepjob-28-alice.out"
    assert named.stderr_path == "/home/alice/stepjob-28.err"
    running = pa.job_record_from_pyslurm(queue_job(raw["30"]), now)
    assert running.state == "RUNNING" and running.end_time is None
    assert running.elapsed_seconds == 1795241200 - 1795241129


def test_queue_job_states_flags_gres_and_dependencies() -> None:
    job = queue_job(json.loads((DATA / "squeue-json-22.05.json").read_text())["jobs"][6])
    now = datetime.now(UTC)
    completing = pa.job_record_from_pyslurm(
        SimpleNamespace(**{**vars(job), "state": "COMPLETING"}), now
    )
    assert completing.state == "COMPLETING" and completing.raw_state == "COMPLETING"
    held = pa.job_record_from_pyslurm(
        SimpleNamespace(**{**vars(job), "state": "REQUEUE_HOLD"}), now
    )
    assert held.state == "PENDING" and held.state_flags == ("REQUEUE_HOLD",)
    gres = pa.job_record_from_pyslurm(
        SimpleNamespace(**{**vars(job), "gres_per_node": {"gres/gpu:a100": 2, "gpu": 1}}), now
    )
    assert gres.gres == "gres/gpu:a100:2,gres/gpu:1"
    deps = {"afterok": ["12(unfulfilled)", 13], "afterany": ["14_*"], "singleton": True}
    either = pa.job_record_from_pyslurm(
        SimpleNamespace(**{**vars(job), "dependencies": deps | {"satisfy": "any"}}), now
    )
    assert either.dependency == "afterany:14_*?afterok:12?afterok:13?singleton"
    unlimited = pa.job_record_from_pyslurm(
        SimpleNamespace(**{**vars(job), "time_limit": None, "memory_per_node": UNLIMITED}), now
    )
    assert unlimited.time_limit_seconds is None and unlimited.memory_per_node_mib == 0


def test_accounting_jobs_match_the_command_line_adapter_field_by_field() -> None:
    cli = {j.job_id: j for j in parse_sacct((DATA / "sacct-parsable-22.05.txt").read_text())}
    jobs = db_jobs()
    assert len(jobs) == len(cli) == 14
    for job in jobs:
        mine = pa.accounting_job_from_pyslurm(job)
        theirs = cli[str(job.id)]
        expected = {}
        if theirs.raw_state.startswith("CANCELLED by"):
            # pyslurm has the state word only (and the canceller's name, not the uid).
            expected["raw_state"] = ("CANCELLED", theirs.raw_state)
        assert _differences(mine, theirs) == expected, job.id
        for my_step, their_step in zip(mine.steps, theirs.steps, strict=True):
            step_expected = {}
            if their_step.raw_state.startswith("CANCELLED by"):
                step_expected["raw_state"] = ("CANCELLED", their_step.raw_state)
            assert _differences(my_step, their_step) == step_expected, (job.id, my_step.step_id)


def test_accounting_job_details() -> None:
    jobs = {str(j.id): j for j in db_jobs()}
    cancelled = pa.accounting_job_from_pyslurm(jobs["26"])
    assert (cancelled.exit_code, cancelled.signal) == (0, 15)  # from the batch step
    assert cancelled.steps[0].step_id == "batch" and cancelled.batch_host == "vm"
    steps = pa.accounting_job_from_pyslurm(jobs["28"])
    assert [s.step_id for s in steps.steps] == ["batch", "0", "1"] and steps.ntasks == 2
    assert steps.steps[1].name == "hostname" and steps.steps[1].allocated_tres["mem"] == 400
    assert pa.accounting_job_from_pyslurm(jobs["28"], steps=False).steps == ()
    pending = pa.accounting_job_from_pyslurm(jobs["32"])
    assert pending.array_task_spec == "0-9%2" and pending.node_list == ""
    assert pending.time_limit_seconds is None and pending.elapsed_seconds == 0
    task = pa.accounting_job_from_pyslurm(jobs["33"])
    assert (task.array_job_id, task.array_task_id, task.array_task_spec) == (27, 0, "")
    assert pa.accounting_job_from_pyslurm(jobs["37"]).comment == "hpcgate-request:abc123"
    with_paths = SimpleNamespace(**{**vars(jobs["24"]), "standard_output": "/home/alice/o.out"})
    record = pa.accounting_job_from_pyslurm(with_paths)
    assert record.stdout_path == record.stderr_path == "/home/alice/o.out"


def test_tres_from_pyslurm() -> None:
    gpu = SimpleNamespace(type_and_name="gres/gpu:a100", count=2)
    disk = SimpleNamespace(type_and_name="fs/disk", count=100)
    value = SimpleNamespace(
        cpu=SimpleNamespace(count=8),
        mem=SimpleNamespace(count=16384),
        energy=None,
        node=SimpleNamespace(count=1),
        billing=SimpleNamespace(count=8),
        vmem=None,
        pages=None,
        gres={"gpu:a100": gpu},
        fs={"disk": disk},
        license={},
        interconnect={},
        other={},
    )
    assert pa.tres_from_pyslurm(value) == {
        "cpu": 8,
        "mem": 16384,
        "node": 1,
        "billing": 8,
        "gres/gpu:a100": 2,
        "fs/disk": 100,
    }
    assert pa.tres_from_pyslurm(None) == {}
    assert pa.tres_from_pyslurm(tres("cpu=2,mem=1G,gres/gpu=1")) == {
        "cpu": 2,
        "mem": 1024,
        "gres/gpu": 1,
    }


# --- Partitions, nodes, reservations ---


def partition(kv: dict[str, str]) -> SimpleNamespace:
    """A pyslurm.Partition for one `scontrol show partition` record (22.05)."""

    def minutes(value: str, on_inf: Any) -> Any:
        if value == UNLIMITED:
            return on_inf
        if value == "NONE":
            return None
        days, _, clock = value.rpartition("-")
        h, m, s = (int(x) for x in clock.split(":"))
        return (int(days or 0) * 24 + h) * 60 + m + s // 60

    def names(value: str) -> list[str]:
        return value.split(",")

    return SimpleNamespace(
        name=kv["PartitionName"],
        state=kv["State"],
        nodes=kv["Nodes"],
        total_nodes=int(kv["TotalNodes"]),
        total_cpus=int(kv["TotalCPUs"]),
        is_default=kv["Default"] == "YES",
        max_time=minutes(kv["MaxTime"], UNLIMITED),
        default_time=minutes(kv["DefaultTime"], UNLIMITED),
        max_nodes=UNLIMITED if kv["MaxNodes"] == UNLIMITED else int(kv["MaxNodes"]),
        min_nodes=int(kv["MinNodes"]),
        max_cpus_per_node=UNLIMITED
        if kv["MaxCPUsPerNode"] == UNLIMITED
        else int(kv["MaxCPUsPerNode"]),
        allowed_accounts=names(kv["AllowAccounts"]),
        allowed_groups=names(kv["AllowGroups"]),
        allowed_qos=names(kv["AllowQos"]),
        denied_accounts=["ALL"],  # cstr.to_list(NULL, ["ALL"])
        denied_qos=["ALL"],
        qos=_str(kv["QoS"]) if kv["QoS"] != "N/A" else None,
        priority_tier=int(kv["PriorityTier"]),
        priority_job_factor=int(kv["PriorityJobFactor"]),
        oversubscribe=kv["OverSubscribe"],
        preempt_mode=kv["PreemptMode"],
        is_hidden=kv["Hidden"] == "YES",
        # def_mem_per_cpu == 0: per node UNLIMITED, per CPU None (config._get_memory).
        default_memory_per_cpu=None,
        default_memory_per_node=UNLIMITED,
        max_memory_per_cpu=None,
        max_memory_per_node=UNLIMITED,
    )


def test_partitions_match_the_command_line_adapter() -> None:
    text = (DATA / "scontrol-show-partition-22.05.txt").read_text()
    cli = {p.name: p for p in parse_partitions(text)}
    nodes = parse_nodes_json((DATA / "sinfo-json-22.05.json").read_text())
    now = datetime.now(UTC)
    for line in text.splitlines():
        mine = pa.partition_info_from_pyslurm(partition(parse_key_values(line)))
        theirs = cli[mine.name]
        assert _differences(mine, theirs).keys() == {"extra"}
        for key in mine.extra.keys() & theirs.extra.keys():
            assert mine.extra[key] == theirs.extra[key], key
        # What the API shows of a partition is the same from either adapter.
        assert partition_to_proto(mine, nodes, [], "s", now) == partition_to_proto(
            theirs, nodes, [], "s", now
        )


def test_partition_memory_and_access_lists() -> None:
    kv = parse_key_values((DATA / "scontrol-show-partition-22.05.txt").read_text().splitlines()[0])
    custom = SimpleNamespace(
        **{
            **vars(partition(kv)),
            "default_memory_per_cpu": 2000,
            "default_memory_per_node": None,
            "max_memory_per_cpu": UNLIMITED,
            "max_memory_per_node": None,
            "denied_accounts": ["guest"],
            "allowed_accounts": ["alpha", "beta"],
            "qos": "part_qos",
        }
    )
    extra = pa.partition_info_from_pyslurm(custom).extra
    assert extra["DefMemPerCPU"] == "2000" and "DefMemPerNode" not in extra
    assert extra["MaxMemPerCPU"] == UNLIMITED and "MaxMemPerNode" not in extra
    assert extra["DenyAccounts"] == "guest" and "DenyQos" not in extra
    assert extra["AllowAccounts"] == "alpha,beta" and extra["QoS"] == "part_qos"
    assert extra["MaxTime"] == "01:00:00" and extra["DefaultTime"] == "NONE"


def node(raw: dict[str, Any]) -> SimpleNamespace:
    """A pyslurm.Node for one node of `sinfo --json` (22.05) or `scontrol --json show
    nodes` (23.11): state is slurm_node_state_string_complete, `IDLE+DRAIN`."""

    def number(value: Any) -> Any:
        return value["number"] if isinstance(value, dict) else value

    state = raw["state"] if isinstance(raw["state"], list) else [raw["state"]]
    state = [*state, *(raw.get("state_flags") or [])]
    load = raw.get("cpu_load")
    gres: dict[str, int] = {}
    for item in (raw.get("gres") or "").split(","):
        if item:
            name, _, count = item.rpartition(":")
            gres[name] = int(count)
    return SimpleNamespace(
        name=raw["name"],
        state="+".join(s.upper() for s in state),
        total_cpus=raw["cpus"],
        allocated_cpus=raw["alloc_cpus"],
        real_memory=number(raw["real_memory"]),
        partitions=raw["partitions"],
        reason=_str(raw["reason"]),
        configured_gres=gres,
        allocated_gres={},
        allocated_memory=raw.get("alloc_memory", 0),
        free_memory=_num(raw.get("free_memory")),
        cpu_load=load / 100.0 if load is not None else 0.0,
        available_features=[f for f in (raw.get("features") or "").split(",") if f],
        active_features=[f for f in (raw.get("active_features") or "").split(",") if f],
        sockets=raw.get("sockets", 0),
        cores_per_socket=_num(raw.get("cores")),
        threads_per_core=_num(raw.get("threads")),
        architecture=_str(raw.get("architecture")),
        boot_time=_raw_time(raw.get("boot_time")),
        reason_time=_raw_time(raw.get("reason_changed_at")),
        reason_user=raw.get("reason_set_by_user"),
    )


@pytest.mark.parametrize("recording", ["sinfo-json-22.05.json", "scontrol-json-nodes-23.11.json"])
def test_nodes_match_the_command_line_adapter(recording: str) -> None:
    text = (DATA / recording).read_text()
    cli = parse_nodes_json(text)
    now = datetime.now(UTC)
    for raw, theirs in zip(json.loads(text)["nodes"], cli, strict=True):
        mine = pa.node_info_from_pyslurm(node(raw))
        expected = {}
        if theirs.cpu_load is None:  # pyslurm says 0.0 for "not reported"
            expected["cpu_load"] = (0.0, None)
        assert _differences(mine, theirs) == expected, raw["name"]
        assert node_to_proto(mine, "s", now) == node_to_proto(theirs, "s", now)


def test_node_states_and_gres() -> None:
    raw = json.loads((DATA / "scontrol-json-nodes-23.11.json").read_text())["nodes"][0]
    drained = SimpleNamespace(
        **{
            **vars(node(raw)),
            "state": "MIXED+DRAIN+NOT_RESPONDING",
            "configured_gres": {"gpu:a100": 4, "gpu": 4},
            "allocated_gres": {"gpu:a100": {"count": 2, "indexes": "0-1"}},
        }
    )
    info = pa.node_info_from_pyslurm(drained)
    assert info.states == ("MIXED", "DRAIN", "NOT_RESPONDING") and not info.available
    assert info.gres == "gpu:a100:4,gpu:4" and info.gres_used == "gpu:a100:2"


class ReservationFlags(enum.Flag):
    """Names as pyslurm.ReservationFlags (core/reservation.pyx); values arbitrary."""

    MAINTENANCE = 1
    SPECIFIC_NODES = 2
    IGNORE_RUNNING_JOBS = 4
    PURGE = 8


def reservation(kv: dict[str, str]) -> SimpleNamespace:
    """A pyslurm.Reservation for one `scontrol show reservation` record (22.05)."""
    flags = ReservationFlags(0)
    for word in filter(None, kv["Flags"].split(",")):
        flags |= {
            "MAINT": ReservationFlags.MAINTENANCE,
            "SPEC_NODES": ReservationFlags.SPECIFIC_NODES,
        }[word]
    start, end = _epoch(kv["StartTime"]), _epoch(kv["EndTime"])
    assert start is not None and end is not None

    def names(value: str) -> list[str]:
        return [] if value == "(null)" else value.split(",")

    return SimpleNamespace(
        name=kv["ReservationName"],
        start_time=start,
        end_time=end,
        duration=(end - start) // 60,
        is_active=kv["State"] == "ACTIVE",  # pyslurm compares start/end with now
        nodes=kv["Nodes"],
        node_count=int(kv["NodeCnt"]),
        cpus=int(kv["CoreCnt"]),
        users=names(kv["Users"]),
        accounts=names(kv["Accounts"]),
        groups=names(kv["Groups"]),
        partition=_str(kv["PartitionName"]) if kv["PartitionName"] != "(null)" else None,
        flags=flags,
        reoccurrence="NO",
        features=names(kv["Features"]),
        tres={k: int(v) for k, v in (i.split("=") for i in kv["TRES"].split(","))},
    )


def test_reservations_match_the_command_line_adapter() -> None:
    text = (DATA / "scontrol-show-reservation-22.05.txt").read_text()
    cli = {r.name: r for r in parse_reservations(text)}
    for line in text.splitlines():
        mine = pa.reservation_from_pyslurm(reservation(parse_key_values(line)))
        assert _differences(mine, cli[mine.name]) == {}, mine.name
    line = text.splitlines()[0]
    weekly = SimpleNamespace(
        **{
            **vars(reservation(parse_key_values(line))),
            "reoccurrence": "WEEKLY",
            "flags": ReservationFlags.IGNORE_RUNNING_JOBS | ReservationFlags.PURGE,
            "tres": {"cpu": 8, "mem": "16G"},
        }
    )
    record = pa.reservation_from_pyslurm(weekly)
    assert record.flags == ("IGNORE_JOBS", "PURGE_COMP", "WEEKLY")
    assert record.tres == {"cpu": 8, "mem": 16384} and record.duration_seconds == 3600


# --- Accounting: default account; errors ---


def test_default_account_from_associations() -> None:
    def assoc(user: str, account: str, cluster: str, default: bool) -> SimpleNamespace:
        return SimpleNamespace(user=user, account=account, cluster=cluster, is_default=default)

    assocs = [
        assoc("bob", "alpha", "other", True),
        assoc("bob", "beta", "local", False),
        assoc("bob", "gamma", "local", True),
        assoc("alice", "alpha", "local", True),
    ]
    assert pa.default_account_from_pyslurm(assocs, "bob", "local") == "gamma"
    assert pa.default_account_from_pyslurm(assocs, "bob", "") == "alpha"
    assert pa.default_account_from_pyslurm(assocs, "carol", "local") == ""


class PyslurmError(Exception):
    """Shaped like pyslurm.PyslurmError / pyslurm.RPCError (core/error.pyx)."""


class RPCError(PyslurmError):
    def __init__(self, errno: int = -1, msg: str | None = None) -> None:
        self.errno, self.msg = errno, msg or f"error {errno}"
        super().__init__(self.msg)


def test_errors_map_to_slurm_error_or_unavailable() -> None:
    down = pa.slurm_error_from_pyslurm(
        RPCError(1800, "Unable to contact slurm controller (connect failure)")
    )
    assert type(down) is SlurmUnavailable
    assert type(pa.slurm_error_from_pyslurm(RPCError(msg="Failed to get Jobs from slurmdbd"))) is (
        SlurmUnavailable
    )
    assert (
        type(pa.slurm_error_from_pyslurm(RPCError(7000, "Unable to connect"))) is SlurmUnavailable
    )
    invalid = pa.slurm_error_from_pyslurm(RPCError(2017, "Invalid job id specified"))
    assert type(invalid) is SlurmError and str(invalid) == "Invalid job id specified"


# --- pyslurm 24.11.0: what it lacks, and its old API (deprecated.pyx) ---

# Attributes of the pyslurm 25.11.2 objects above that 24.11.0 does not have (its
# core/job/job.pyx, db/job.pyx, db/step.pyx): reading one raises AttributeError.
NOT_IN_24_11 = {
    "job": {"requested_tres", "allocated_tres"},
    "db_job": {
        "requested_tres",
        "allocated_tres",
        "standard_output",
        "standard_error",
        "requeue_count",
    },
    "db_step": {"tres"},
}


def as_24_11(obj: SimpleNamespace, kind: str) -> SimpleNamespace:
    values = {k: v for k, v in vars(obj).items() if k not in NOT_IN_24_11[kind]}
    if kind == "db_job":
        values["steps"] = {k: as_24_11(v, "db_step") for k, v in obj.steps.items()}
    return SimpleNamespace(**values)


def old_api_job(job: dict[str, Any]) -> dict[str, Any]:
    """An entry of the old API's job().get() (get_job_ptr: stringOrNone(x, '') is None
    for NULL) for one job of `squeue --json`; only what the adapter reads."""
    return {
        "job_id": job["job_id"],
        "tres_req_str": job["tres_req_str"] or None,
        "tres_alloc_str": job["tres_alloc_str"] or None,
    }


# slurmdbd's TRES ids (db.TrackableResources.load(name_is_key=False)): 1-8 are fixed.
TRES_IDS = {"cpu": 1, "mem": 2, "energy": 3, "node": 4, "billing": 5, "fs/disk": 6, "vmem": 7,
            "pages": 8, "gres/gpu": 1001}  # fmt: skip
# Raw step ids (slurm.h), by which the old API keys a job's steps.
STEP_IDS = {"batch": 0xFFFFFFFB, "extern": 0xFFFFFFFC, "interactive": 0xFFFFFFFA}
NO_VAL64 = 0xFFFFFFFFFFFFFFFE


def _tres_ids(text: str, energy: bool = False) -> str:
    """sacct's TRES (names, memory with a unit) as slurmdbd stores them: ids and MiB.
    `energy`: the NO_VAL64 energy entry Slurm 24.11 stores for allocations."""
    items = [f"{TRES_IDS[k]}={v}" for k, v in parse_tres(text).items()]
    return ",".join(items + ([f"3={NO_VAL64}"] if energy and items else []))


def old_api_db_jobs() -> dict[int, dict[str, Any]]:
    """The old API's slurmdb_jobs().get() for the recorded sacct rows (the keys the
    adapter reads): {jobid: {..., "steps": {raw step id: {...}}}}."""
    out: dict[int, dict[str, Any]] = {}
    for row in _sacct_rows():
        job_id, dot, step = row["JobIDRaw"].partition(".")
        if not dot:
            out[int(job_id)] = {
                "jobid": int(job_id),
                "tres_req_str": _tres_ids(row["ReqTRES"]) or None,
                "tres_alloc_str": _tres_ids(row["AllocTRES"], energy=True) or None,
                "steps": {},
            }
        else:
            raw = STEP_IDS.get(step) or int(step)
            out[int(job_id)]["steps"][raw] = {
                "stepid": raw,
                "tres_alloc_str": _tres_ids(row["AllocTRES"]) or None,
            }
    return out


def old_api_tres(name_is_key: bool = True) -> dict[Any, SimpleNamespace]:
    assert not name_is_key  # the adapter needs the ids
    return {i: SimpleNamespace(id=i, type_and_name=n) for n, i in TRES_IDS.items()}


def old_api_reservation(kv: dict[str, str]) -> dict[str, Any]:
    """An entry of the old API's reservation().get() for one `scontrol show reservation`
    record: listOrNone gives [] for NULL, stringOrNone None; the flags are Slurm's
    slurm_reservation_flags_string, as scontrol prints them."""

    def names(value: str) -> list[str]:
        return [] if value == "(null)" else value.split(",")

    def text(value: str) -> str | None:
        return None if value == "(null)" else value

    start, end = _epoch(kv["StartTime"]), _epoch(kv["EndTime"])
    return {
        "accounts": names(kv["Accounts"]),
        "burst_buffer": [],
        "core_cnt": int(kv["CoreCnt"]),
        "end_time": end,
        "features": text(kv["Features"]),
        "flags": kv["Flags"],
        "licenses": {},
        "node_cnt": int(kv["NodeCnt"]),
        "node_list": kv["Nodes"],
        "partition": text(kv["PartitionName"]),
        "start_time": start,
        "tres_str": names(kv["TRES"]),
        "users": names(kv["Users"]),
    }


@pytest.mark.parametrize(
    ("version", "new_calls", "tres"),
    [
        ("24.11.0", False, False),
        ("24.5.1", False, False),
        ("25.11.0", True, False),  # ping_all and Reservations, but no TRES attributes yet
        ("25.11.1", True, True),
        ("25.11.2", True, True),
        ("26.5.0rc1", True, True),
        ("", False, False),
    ],
)
def test_the_api_is_chosen_by_pyslurm_version(version: str, new_calls: bool, tres: bool) -> None:
    api = pa.pyslurm_api(version)
    assert (api.slurmctld_calls, api.reservations) == (new_calls, new_calls)
    assert (api.tres, api.accounting_io) == (tres, tres)
    assert api.old_job_table == (not new_calls)  # deprecated.pyx's `job`: gone in 25.11


def test_queue_jobs_24_11_match_the_command_line_adapter_field_by_field() -> None:
    text = (DATA / "squeue-json-22.05.json").read_text()
    now = datetime.fromtimestamp(1795241200, UTC)
    cli = {j.job_id: j for j in parse_squeue_json(text, now)}
    for job in json.loads(text)["jobs"]:
        old = old_api_job(job)
        tres = (parse_tres(old["tres_req_str"] or ""), parse_tres(old["tres_alloc_str"] or ""))
        mine = pa.job_record_from_pyslurm(as_24_11(queue_job(job), "job"), now, tres=tres)
        theirs = cli[str(job["job_id"])]
        assert _differences(replace(mine, cpus_per_task=0), theirs) == {}, job["job_id"]
    with pytest.raises(AttributeError, match="requested_tres"):  # the stand-in is 24.11's
        pa.job_record_from_pyslurm(as_24_11(queue_job(job), "job"), now)


def test_accounting_jobs_24_11_match_the_command_line_adapter_field_by_field() -> None:
    cli = {j.job_id: j for j in parse_sacct((DATA / "sacct-parsable-22.05.txt").read_text())}
    jobs = [as_24_11(j, "db_job") for j in db_jobs()]
    module = SimpleNamespace(
        db=SimpleNamespace(TrackableResources=SimpleNamespace(load=old_api_tres)),
        slurmdb_jobs=lambda: SimpleNamespace(get=lambda **kwargs: old_api_db_jobs()),
    )
    tres = pa._accounting_tres_old_api(module, [j.id for j in jobs], "local")
    assert tres[28].steps["0"] == {"cpu": 2, "mem": 400, "node": 1}
    assert tres[24].allocated == {"billing": 1, "cpu": 1, "mem": 100, "node": 1}  # no energy
    for job in jobs:
        mine = pa.accounting_job_from_pyslurm(job, tres=tres[job.id], with_io=False)
        theirs = cli[str(job.id)]
        expected = {}
        if theirs.raw_state.startswith("CANCELLED by"):
            expected["raw_state"] = ("CANCELLED", theirs.raw_state)
        # 24.11 has no stdout/stderr or requeue count, as sacct here: no difference.
        assert _differences(mine, theirs) == expected, job.id
        for my_step, their_step in zip(mine.steps, theirs.steps, strict=True):
            step_expected = {}
            if their_step.raw_state.startswith("CANCELLED by"):
                step_expected["raw_state"] = ("CANCELLED", their_step.raw_state)
            assert _differences(my_step, their_step) == step_expected, (job.id, my_step.step_id)
    with pytest.raises(AttributeError, match="standard_output"):
        pa.accounting_job_from_pyslurm(jobs[0], tres=tres[jobs[0].id])


def test_tres_from_ids() -> None:
    names = {i: n for n, i in TRES_IDS.items()}
    assert pa.tres_from_ids(f"1=2,2=400,3={NO_VAL64},4=1,5=2,1001=1", names) == {
        "cpu": 2, "mem": 400, "node": 1, "billing": 2, "gres/gpu": 1,
    }  # fmt: skip
    assert pa.tres_from_ids("9999=4,x=1,1=,", names) == {}  # unknown ids, garbage
    assert pa.tres_from_ids(None, names) == {} and pa.tres_from_ids("", names) == {}


def test_array_task_zero_and_waiting_tasks() -> None:
    """pyslurm's u32_parse makes task 0 None, as for "no task"; slurmdbd keeps waiting
    tasks as a hex bitmap. Both releases."""
    job = queue_job(json.loads((DATA / "squeue-json-22.05.json").read_text())["jobs"][0])
    now = datetime.now(UTC)
    task0 = SimpleNamespace(**{**vars(job), "array_id": 27, "array_task_id": None})
    assert pa.job_record_from_pyslurm(task0, now).array_task_id == 0
    pending = SimpleNamespace(**{**vars(task0), "array_tasks_waiting": "0-9"})
    assert pa.job_record_from_pyslurm(pending, now).array_task_id is None
    db = {j.id: j for j in db_jobs()}[32]
    assert db.array_tasks_waiting == "0x3FF"
    assert pa.accounting_job_from_pyslurm(db).array_task_spec == "0-9%2"
    sparse = SimpleNamespace(**{**vars(db), "array_tasks_waiting": "0x2B5"})
    assert pa.accounting_job_from_pyslurm(sparse).array_task_spec == "0,2,4-5,7,9%2"
    never_ran = pa.accounting_job_from_pyslurm(db)
    assert (never_ran.cpus, never_ran.node_count) == (1, 1)  # from the request, as sacct


def test_unknown_uids_give_the_number() -> None:
    """pyslurm 24.11's uid_to_name raises KeyError for a uid the host cannot name."""

    class Unnamed(SimpleNamespace):
        @property
        def user_name(self) -> str:
            raise KeyError(4242)

        @property
        def reason_user(self) -> str:
            raise KeyError(4242)

    job = queue_job(json.loads((DATA / "squeue-json-22.05.json").read_text())["jobs"][0])
    record = pa.job_record_from_pyslurm(
        Unnamed(**{k: v for k, v in vars(job).items() if k != "user_name"} | {"user_id": 4242}),
        datetime.now(UTC),
    )
    assert (record.user, record.uid) == ("4242", 4242)
    db = db_jobs()[0]
    unnamed_db = Unnamed(**{k: v for k, v in vars(db).items() if k != "user_name"})
    assert pa.accounting_job_from_pyslurm(unnamed_db).user == str(db.user_id)
    raw = json.loads((DATA / "scontrol-json-nodes-23.11.json").read_text())["nodes"][0]
    fields_ = {k: v for k, v in vars(node(raw)).items() if k != "reason_user"}
    assert pa.node_info_from_pyslurm(Unnamed(**fields_)).reason_user == ""


def test_reservations_24_11_match_the_command_line_adapter() -> None:
    text = (DATA / "scontrol-show-reservation-22.05.txt").read_text()
    cli = {r.name: r for r in parse_reservations(text)}
    # The recording's moment: teamb (06:06:32-06:36:32 local) active, maint not yet.
    now = datetime.fromisoformat("2026-11-21T06:20:00").astimezone(UTC)
    for line in text.splitlines():
        kv = parse_key_values(line)
        mine = pa.reservation_from_old_api(kv["ReservationName"], old_api_reservation(kv), now)
        assert _differences(mine, cli[mine.name]) == {}, mine.name
    kv = parse_key_values(text.splitlines()[0])
    weekly = old_api_reservation(kv) | {"flags": "IGNORE_JOBS,WEEKLY,SPEC_NODES", "users": []}
    record = pa.reservation_from_old_api("w", weekly | {"tres_str": ["cpu=8", "mem=16G"]}, now)
    assert record.flags == ("IGNORE_JOBS", "WEEKLY", "SPEC_NODES") and record.users == ()
    assert record.tres == {"cpu": 8, "mem": 16384} and record.groups == ()
    assert pa.reservation_from_old_api("n", weekly | {"flags": None}, now).flags == ()


def test_old_api_errors_map_to_slurm_error_or_unavailable() -> None:
    """The old API raises ValueError(message, errno), not RPCError."""
    down = pa.slurm_error_from_pyslurm(
        ValueError("Unable to contact slurm controller (connect failure)", 1800)
    )
    assert type(down) is SlurmUnavailable
    assert str(down) == "Unable to contact slurm controller (connect failure)"
    assert type(pa.slurm_error_from_pyslurm(ValueError("Unable to connect", 7000))) is (
        SlurmUnavailable
    )
    invalid = pa.slurm_error_from_pyslurm(ValueError("Invalid job id specified", 2017))
    assert type(invalid) is SlurmError and str(invalid) == "Invalid job id specified"


# --- The adapter, with a fake pyslurm module (same process, thread pool) ---


class Collection(dict[Any, Any]):
    """pyslurm's MultiClusterMap: `.values()` gives the objects of every cluster."""


def fake_pyslurm(**overrides: Any) -> SimpleNamespace:
    jobs = {
        j["job_id"]: queue_job(j)
        for j in json.loads((DATA / "squeue-json-22.05.json").read_text())["jobs"]
    }
    partition_lines = (DATA / "scontrol-show-partition-22.05.txt").read_text().splitlines()
    calls: list[tuple[str, Any]] = []

    class JobFilter:
        def __init__(self, **kwargs: Any) -> None:
            calls.append(("JobFilter", kwargs))
            self.kwargs = kwargs

    class AssociationFilter:
        def __init__(self, **kwargs: Any) -> None:
            calls.append(("AssociationFilter", kwargs))

    def associations(db_filter: Any = None) -> Collection:
        return Collection(
            {1: SimpleNamespace(user="bob", account="beta", cluster="local", is_default=True)}
        )

    module = SimpleNamespace(
        __version__="25.11.2",
        PyslurmError=PyslurmError,
        RPCError=RPCError,
        settings=SimpleNamespace(LOCAL_CLUSTER="local"),
        calls=calls,
        Jobs=SimpleNamespace(load=lambda: Collection(jobs)),
        Partitions=SimpleNamespace(
            load=lambda: Collection(
                {i: partition(parse_key_values(line)) for i, line in enumerate(partition_lines)}
            )
        ),
        Nodes=SimpleNamespace(load=lambda: Collection({})),
        Reservations=SimpleNamespace(load=lambda: Collection({})),
        slurmctld=SimpleNamespace(
            ping_all=lambda: [SimpleNamespace(hostname="ctl1", is_responding=True)],
            ping=lambda index: SimpleNamespace(hostname=f"ctl{index + 1}"),
            Config=SimpleNamespace(load=lambda: SimpleNamespace(version="25.11.2")),
        ),
        db=SimpleNamespace(
            JobFilter=JobFilter,
            Jobs=SimpleNamespace(load=lambda db_filter: Collection({j.id: j for j in db_jobs()})),
            AssociationFilter=AssociationFilter,
            Associations=SimpleNamespace(load=associations),
        ),
    )
    for name, value in overrides.items():
        setattr(module, name, value)
    return module


@pytest.fixture
def pyslurm(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    module = fake_pyslurm()
    monkeypatch.setitem(sys.modules, "pyslurm", module)
    monkeypatch.setitem(sys.modules, "pyslurm.settings", module.settings)
    return module


def adapter(**settings: Any) -> pa.PyslurmAdapter:
    return pa.PyslurmAdapter(
        SlurmConfig(adapter="pyslurm", **settings),
        executor_factory=lambda: ThreadPoolExecutor(max_workers=2),
    )


async def test_adapter_calls(pyslurm: SimpleNamespace) -> None:
    a = adapter()
    assert a.pyslurm_version == "25.11.2" and a.cluster == "local"
    ping = await a.ping()
    assert ping.up and ping.responding_hosts == ("ctl1",) and ping.detail == ""
    assert await a.version() == "25.11.2"
    assert [p.name for p in await a.partitions()] == ["debug", "long"]
    assert await a.nodes() == [] and await a.reservations() == []
    assert await a.user_default_account("bob") == "beta"
    assert ("AssociationFilter", {"users": ["bob"]}) in pyslurm.calls

    everything = await a.queue_jobs()
    assert len(everything) == 11
    assert [j.job_id for j in await a.queue_jobs(["32_4"])] == ["32"]  # pending array
    assert [j.job_id for j in await a.queue_jobs(["27_1", "999"])] == ["34"]
    assert {j.user for j in await a.queue_jobs(users=["bob"])} == {"bob"}


async def test_accounting_filters(
    pyslurm: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def getpwnam(name: str) -> Any:
        if name not in {"alice", "bob"}:
            raise KeyError(name)
        return SimpleNamespace(pw_name=name)

    monkeypatch.setattr("pwd.getpwnam", getpwnam)
    a = adapter()
    start = datetime.now(UTC) - timedelta(days=1)
    jobs = await a.accounting_jobs(["26", "27_1"], ["alice", "nosuchuser"], start, steps=False)
    assert [j.job_id for j in jobs] == ["26", "34"] and all(j.steps == () for j in jobs)
    assert pyslurm.calls[-1] == (
        "JobFilter",
        {
            "ids": [26, 27],
            "users": ["alice"],
            "clusters": ["local"],
            "start_time": int(start.timestamp()),
        },
    )
    everything = await a.accounting_jobs()
    assert len(everything) == 14 and pyslurm.calls[-1] == ("JobFilter", {"clusters": ["local"]})

    calls = len(pyslurm.calls)
    assert await a.accounting_jobs(users=["nosuchuser"]) == []
    assert await a.accounting_jobs(["not-an-id"]) == []
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await a.accounting_jobs(start=later) == []  # an empty window
    assert len(pyslurm.calls) == calls  # none of these asked slurmdbd


async def test_ping_falls_back_to_each_controller(
    pyslurm: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ping_all() -> list[Any]:
        raise RPCError(1800, "Unable to contact slurm controller (connect failure)")

    def ping(index: int) -> Any:
        if index == 0:
            raise RPCError(1800, "Unable to contact slurm controller (connect failure)")
        return SimpleNamespace(hostname="backup")

    monkeypatch.setattr(pyslurm.slurmctld, "ping_all", ping_all)
    monkeypatch.setattr(pyslurm.slurmctld, "ping", ping)
    result = await adapter().ping()
    assert result.up and result.responding_hosts == ("backup",)
    assert "Unable to contact" in result.detail

    monkeypatch.setattr(pyslurm.slurmctld, "ping", lambda index: ping(0))
    down = await adapter().ping()
    assert not down.up and down.responding_hosts == () and "Unable to contact" in down.detail


async def test_errors_and_time_outs(
    pyslurm: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable() -> Any:
        raise RPCError(1800, "Unable to contact slurm controller (connect failure)")

    monkeypatch.setattr(pyslurm.Partitions, "load", unreachable)
    with pytest.raises(SlurmUnavailable, match="Unable to contact"):
        await adapter().partitions()

    monkeypatch.setattr(pyslurm.Nodes, "load", lambda: Collection({1: SimpleNamespace(name="x")}))
    with pytest.raises(SlurmError, match="pyslurm call failed: AttributeError"):
        await adapter().nodes()  # an object without the attributes pyslurm 25.11 has

    def slow() -> Any:
        time.sleep(0.5)
        return Collection({})

    monkeypatch.setattr(pyslurm.Reservations, "load", slow)
    with pytest.raises(SlurmUnavailable, match=r"did not answer within 0\.1 s"):
        await adapter(command_timeout=0.1).reservations()
    ping_slow = adapter(command_timeout=0.1)
    monkeypatch.setattr(pyslurm.slurmctld, "ping_all", slow)
    result = await ping_slow.ping()
    assert not result.up and "did not answer" in result.detail


async def test_cli_fallbacks(pyslurm: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    a = adapter()
    seen: list[str] = []

    def fake(name: str, value: Any) -> Any:
        async def call(*args: Any) -> Any:
            seen.append(name)
            return value

        return call

    for name in ("fair_share", "usage", "accounts", "user_associations"):
        monkeypatch.setattr(a.cli, name, fake(name, name))
    now = datetime.now(UTC)
    assert await a.fair_share("bob") == "fair_share"  # type: ignore[comparison-overlap]
    assert await a.usage(["alpha"], now - timedelta(hours=1), now) == "usage"  # type: ignore[comparison-overlap]
    assert await a.accounts(["alpha"]) == "accounts"  # type: ignore[comparison-overlap]
    assert await a.user_associations("bob") == "user_associations"  # type: ignore[comparison-overlap]
    assert seen == ["fair_share", "usage", "accounts", "user_associations"]


def test_cluster_other_than_the_local_one_is_refused(pyslurm: SimpleNamespace) -> None:
    with pytest.raises(ConfigError, match="cluster 'local' only"):
        adapter(cluster="elsewhere")
    assert adapter(cluster="local").cluster == "local"


# --- The adapter with a fake pyslurm 24.11.0 ---


def fake_pyslurm_24_11(**overrides: Any) -> SimpleNamespace:
    """fake_pyslurm as pyslurm 24.11.0: no Reservations, a slurmctld with Config only
    (no ping, no version), objects without TRES, and the old API's functions and
    classes (deprecated.pyx) in the top-level module, which raise ValueError."""
    base = fake_pyslurm()
    calls = base.calls
    raw_jobs = json.loads((DATA / "squeue-json-22.05.json").read_text())["jobs"]
    reservation_lines = (DATA / "scontrol-show-reservation-22.05.txt").read_text().splitlines()

    class OldJob:  # deprecated.pyx `job`
        def get(self) -> dict[int, dict[str, Any]]:
            calls.append(("job.get", None))
            return {j["job_id"]: old_api_job(j) for j in raw_jobs}

    class OldDbJobs:  # deprecated.pyx `slurmdb_jobs`
        def get(self, jobids: Any = (), clusters: Any = (), **kwargs: Any) -> dict[int, Any]:
            calls.append(("slurmdb_jobs.get", {"jobids": list(jobids), "clusters": clusters}))
            return {k: v for k, v in old_api_db_jobs().items() if str(k) in jobids}

    class OldReservation:  # deprecated.pyx `reservation`
        def get(self) -> dict[str, dict[str, Any]]:
            found = (parse_key_values(line) for line in reservation_lines)
            return {kv["ReservationName"]: old_api_reservation(kv) for kv in found}

    class OldConfig:  # deprecated.pyx `config`
        def get(self) -> dict[str, Any]:
            return {"cluster_name": "local", "version": "24.11.5"}

    def slurm_ping(index: int = 0) -> int:
        if index > 0:
            raise ValueError("Unable to contact slurm controller (connect failure)", 1800)
        return 0

    module = SimpleNamespace(
        **{k: v for k, v in vars(base).items() if k not in {"Reservations", "slurmctld"}}
    )
    module.__version__ = "24.11.0"
    module.slurmctld = SimpleNamespace(
        Config=SimpleNamespace(load=lambda: SimpleNamespace(cluster="local"))
    )
    module.Jobs = SimpleNamespace(
        load=lambda: Collection({j["job_id"]: as_24_11(queue_job(j), "job") for j in raw_jobs})
    )
    module.db = SimpleNamespace(
        **{
            **vars(base.db),
            "Jobs": SimpleNamespace(
                load=lambda db_filter: Collection({j.id: as_24_11(j, "db_job") for j in db_jobs()})
            ),
            "TrackableResources": SimpleNamespace(load=old_api_tres),
        }
    )
    module.job = OldJob
    module.slurmdb_jobs = OldDbJobs
    module.reservation = OldReservation
    module.config = OldConfig
    module.get_controllers = lambda: ["ctl1", "ctl2"]
    module.slurm_ping = slurm_ping
    for name, value in overrides.items():
        setattr(module, name, value)
    return module


@pytest.fixture
def pyslurm_24_11(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    module = fake_pyslurm_24_11()
    monkeypatch.setitem(sys.modules, "pyslurm", module)
    monkeypatch.setitem(sys.modules, "pyslurm.settings", module.settings)
    return module


async def test_adapter_calls_with_pyslurm_24_11(pyslurm_24_11: SimpleNamespace) -> None:
    calls = pyslurm_24_11.calls
    a = adapter()
    assert a.pyslurm_version == "24.11.0" and a.cluster == "local"
    ping = await a.ping()  # ctl2 does not answer
    assert ping.up and ping.responding_hosts == ("ctl1",)
    assert ping.detail == "ctl2: Unable to contact slurm controller (connect failure)"
    assert await a.version() == "24.11.5"
    assert [p.name for p in await a.partitions()] == ["debug", "long"]
    reservations = {r.name: r for r in await a.reservations()}
    assert reservations["maint"].flags == ("MAINT", "SPEC_NODES")
    assert reservations["teamb"].accounts == ("beta",) and reservations["teamb"].groups == ()
    assert await a.user_default_account("bob") == "beta"

    everything = await a.queue_jobs()
    assert len(everything) == 11 and calls.count(("job.get", None)) == 1
    failed = next(j for j in everything if j.job_id == "25")
    assert failed.requested_tres == {"cpu": 1, "mem": 100, "node": 1, "billing": 1}
    assert failed.allocated_tres == failed.requested_tres
    assert [j.job_id for j in await a.queue_jobs(["32_4"])] == ["32"]
    assert await a.queue_jobs(["999"]) == [] and calls.count(("job.get", None)) == 2

    jobs = {j.job_id: j for j in await a.accounting_jobs(["28", "27_1", "32"])}
    assert list(jobs) == ["28", "34", "32"]  # in slurmdbd's order
    assert calls[-1] == ("slurmdb_jobs.get", {"jobids": ["28", "32", "34"], "clusters": ["local"]})
    steps = jobs["28"]
    assert steps.allocated_tres == {"billing": 2, "cpu": 2, "mem": 400, "node": 1}
    assert [(s.step_id, s.allocated_tres["cpu"]) for s in steps.steps] == [
        ("batch", 2), ("0", 2), ("1", 2),
    ]  # fmt: skip
    assert steps.stdout_path == "" and steps.restart_count == 0  # not in 24.11
    pending = jobs["32"]
    assert pending.allocated_tres == {} and pending.requested_tres["mem"] == 100
    assert (pending.cpus, pending.node_count, pending.array_task_spec) == (1, 1, "0-9%2")
    assert len(await a.accounting_jobs()) == 14


async def test_pyslurm_24_11_errors(
    pyslurm_24_11: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("Unable to contact slurm controller (connect failure)", 1800)

    monkeypatch.setattr(pyslurm_24_11, "get_controllers", unreachable)
    down = await adapter().ping()
    assert not down.up and down.responding_hosts == ()
    assert down.detail == "Unable to contact slurm controller (connect failure)"
    for name in ("reservation", "config", "job"):
        monkeypatch.setattr(pyslurm_24_11, name, lambda: SimpleNamespace(get=unreachable))
    with pytest.raises(SlurmUnavailable, match=r"^Unable to contact slurm controller"):
        await adapter().reservations()
    with pytest.raises(SlurmUnavailable, match=r"^Unable to contact slurm controller"):
        await adapter().version()
    with pytest.raises(SlurmUnavailable, match=r"^Unable to contact slurm controller"):
        await adapter().queue_jobs()
    monkeypatch.setattr(
        pyslurm_24_11,
        "slurmdb_jobs",
        lambda: SimpleNamespace(get=lambda **kw: unreachable(ValueError("x", 7000))),
    )
    with pytest.raises(SlurmUnavailable):
        await adapter().accounting_jobs(["28"])


async def test_pyslurm_25_11_0_has_the_new_calls_but_no_tres(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """25.11.0: ping_all, Reservations and Config.version, but its objects have no TRES
    yet (25.11.1) and deprecated.pyx no longer has `job`: queue records go without TRES,
    accounting ones read them through slurmdb_jobs as with 24.11."""
    old = fake_pyslurm_24_11()
    module = fake_pyslurm(
        __version__="25.11.0", Jobs=old.Jobs, db=old.db, slurmdb_jobs=old.slurmdb_jobs
    )
    monkeypatch.setitem(sys.modules, "pyslurm", module)
    monkeypatch.setitem(sys.modules, "pyslurm.settings", module.settings)
    a = adapter()
    assert (await a.ping()).responding_hosts == ("ctl1",) and await a.version() == "25.11.2"
    assert await a.reservations() == []
    [queued] = await a.queue_jobs(["25"])
    assert queued.requested_tres == {} and queued.allocated_tres == {}
    [accounted] = await a.accounting_jobs(["28"])
    assert accounted.allocated_tres == {"billing": 2, "cpu": 2, "mem": 400, "node": 1}
    assert accounted.stdout_path == "" and accounted.restart_count == 0


# --- Without pyslurm (this machine) ---

NO_PYSLURM = pytest.mark.skipif(
    "pyslurm" in sys.modules or __import__("importlib").util.find_spec("pyslurm") is not None,
    reason="pyslurm is installed",
)


@NO_PYSLURM
def test_factory_refuses_pyslurm_when_it_is_not_installed() -> None:
    system = SystemConfig(id="hpc", slurm=SlurmConfig(adapter="pyslurm"))
    with pytest.raises(ConfigError) as caught:
        make_adapter(system)
    message = str(caught.value)
    assert "systems.hpc.slurm.adapter = 'pyslurm'" in message
    assert "pip install 'hpcgate[pyslurm]' (it must match your Slurm release)" in message


@NO_PYSLURM
def test_worker_process_without_pyslurm_fails_at_start_up() -> None:
    """The real path: a spawned worker process tries to import pyslurm."""
    with pytest.raises(ConfigError) as caught:
        pa.PyslurmAdapter(SlurmConfig(adapter="pyslurm"))
    assert "pyslurm cannot be loaded: No module named 'pyslurm'" in str(caught.value)
    assert "pip install 'hpcgate[pyslurm]'" in str(caught.value)
