"""JobRecord -> compute_pb2.Job, and Slurm's job state words <-> the API's JobState."""

from __future__ import annotations

from datetime import datetime

from hpcgate.server.api.timeconv import duration, timestamp
from hpcgate.server.slurm.adapter import JobRecord, JobStepRecord
from hpcgate.server.slurm.parsing import expand_hostlist
from hpcgate.v1 import compute_pb2

# Slurm's state words (as JobRecord.state holds them) and the API's states.
_JOB_STATES: dict[str, compute_pb2.JobState] = {
    "PENDING": compute_pb2.JOB_STATE_PENDING,
    "RUNNING": compute_pb2.JOB_STATE_RUNNING,
    "SUSPENDED": compute_pb2.JOB_STATE_SUSPENDED,
    "COMPLETING": compute_pb2.JOB_STATE_COMPLETING,
    "COMPLETED": compute_pb2.JOB_STATE_COMPLETED,
    "FAILED": compute_pb2.JOB_STATE_FAILED,
    "CANCELLED": compute_pb2.JOB_STATE_CANCELLED,
    "TIMEOUT": compute_pb2.JOB_STATE_TIMEOUT,
    "NODE_FAIL": compute_pb2.JOB_STATE_NODE_FAIL,
    "PREEMPTED": compute_pb2.JOB_STATE_PREEMPTED,
    "OUT_OF_MEMORY": compute_pb2.JOB_STATE_OUT_OF_MEMORY,
    "BOOT_FAIL": compute_pb2.JOB_STATE_BOOT_FAIL,
    "DEADLINE": compute_pb2.JOB_STATE_DEADLINE,
    "REQUEUED": compute_pb2.JOB_STATE_REQUEUED,
    "CONFIGURING": compute_pb2.JOB_STATE_CONFIGURING,
}
_SLURM_STATES: dict[int, str] = {value: word for word, value in _JOB_STATES.items()}


def state_to_proto(word: str) -> compute_pb2.JobState:
    """`RUNNING` -> JOB_STATE_RUNNING; a word the API has no value for -> JOB_STATE_OTHER."""
    return _JOB_STATES.get(word.strip().upper(), compute_pb2.JOB_STATE_OTHER)


def proto_state_to_slurm(state: int) -> str:
    """JOB_STATE_RUNNING -> `RUNNING` (for squeue/sacct state filters).

    Raises ValueError for UNSPECIFIED and OTHER, which name no Slurm state.
    """
    try:
        return _SLURM_STATES[state]
    except KeyError:
        raise ValueError(f"{compute_pb2.JobState.Name(state)} names no Slurm state") from None


def _tres(values: dict[str, int]) -> dict[str, int]:
    return {name: count for name, count in values.items() if count >= 0}


def step_to_proto(step: JobStepRecord) -> compute_pb2.JobStep:
    return compute_pb2.JobStep(
        step_id=step.step_id,
        step_name=step.name,
        state=state_to_proto(step.state),
        exit_code=step.exit_code,
        signal=step.signal,
        start_time=timestamp(step.start_time),
        elapsed=duration(step.elapsed_seconds),
        end_time=timestamp(step.end_time),
        node_count=step.node_count,
        node_list=step.node_list,
        ntasks=step.ntasks,
        allocated_tres=_tres(step.allocated_tres),
    )


def job_to_proto(
    job: JobRecord,
    system_id: str,
    include_steps: bool = True,
    revision: int = 0,
    updated_at: datetime | None = None,
) -> compute_pb2.Job:
    """The API's Job; `revision` and `updated_at` are the hub's (its last event of the
    job), 0 and unset when the job has not changed since this server watches."""
    msg = compute_pb2.Job(
        name=f"systems/{system_id}/jobs/{job.job_id}",
        job_id=job.job_id,
        system=system_id,
        job_name=job.job_name,
        user=job.user,
        uid=job.uid or 0,
        account=job.account,
        partition=job.partition,
        qos=job.qos,
        state=state_to_proto(job.state),
        raw_state=job.raw_state or job.state,
        state_flags=job.state_flags,
        reason=job.reason,
        exit_code=job.exit_code,
        signal=job.signal,
        submit_time=timestamp(job.submit_time),
        eligible_time=timestamp(job.eligible_time),
        start_time=timestamp(job.start_time),
        end_time=timestamp(job.end_time),
        estimated_start_time=timestamp(job.estimated_start_time),
        elapsed=duration(job.elapsed_seconds),
        time_limit=duration(job.time_limit_seconds),
        node_count=job.node_count,
        node_list=job.node_list,
        nodes=expand_hostlist(job.node_list),
        cpus=job.cpus,
        ntasks=job.ntasks,
        cpus_per_task=job.cpus_per_task,
        memory_per_node_mib=job.memory_per_node_mib,
        memory_per_cpu_mib=job.memory_per_cpu_mib,
        requested_tres=_tres(job.requested_tres),
        allocated_tres=_tres(job.allocated_tres),
        gres=job.gres,
        working_directory=job.working_directory,
        stdout_path=job.stdout_path,
        stderr_path=job.stderr_path,
        array_job_id=job.array_job_id,
        array_task_spec=job.array_task_spec,
        dependency=job.dependency,
        reservation=job.reservation,
        constraints=job.constraints,
        priority=job.priority,
        batch_host=job.batch_host,
        restart_count=job.restart_count,
        revision=revision,
        updated_at=timestamp(updated_at),
    )
    if job.array_task_id is not None:
        msg.array_task_id = job.array_task_id
    if include_steps:
        msg.steps.extend(step_to_proto(s) for s in job.steps)
    return msg
