"""The Prometheus endpoint: its configuration, its HTTP server, and the figures a real
gateway records while it serves a small workflow on the real Slurm."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from files_helpers import make_owned, user_dir
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from transfer_helpers import wait_task

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.server import config
from hpcgate.server.app import Gateway
from hpcgate.server.metrics import RATE_LIMITED, Metrics
from hpcgate.v1 import compute_pb2 as c
from hpcgate.v1 import compute_pb2_grpc, status_pb2, status_pb2_grpc, storage_pb2_grpc
from hpcgate.v1 import storage_pb2 as s
from hpcgate.v1 import tasks_pb2 as t

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of /metrics on `port`, keyed by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and wanted <= got)


async def scraped(gateway: Gateway) -> Samples:
    return await asyncio.to_thread(scrape, gateway.metrics_port)


# -- configuration ----------------------------------------------------------------------


def test_metrics_are_on_loopback_by_default_and_can_be_turned_off() -> None:
    assert config.parse({}).metrics.listen == "127.0.0.1:9464"
    assert config.load(config.EXAMPLE_CONFIG).metrics == config.parse({}).metrics
    assert config.parse({"metrics": {"listen": ""}}).metrics.listen == ""
    assert config.parse({"metrics": {"listen": "[::1]:0"}}).metrics.listen == "[::1]:0"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"listen": 9464}, "metrics.listen: expected a string"),
        ({"listen": "9464"}, "metrics.listen: '9464' must be HOST:PORT"),
        ({"listen": "127.0.0.1:70000"}, "metrics.listen"),
        ({"port": 1}, "unknown key(s): metrics.port"),
    ],
)
def test_bad_metrics_settings_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(config.ConfigError) as e:
        config.parse({"metrics": table})
    assert message in str(e.value)


# -- the HTTP server --------------------------------------------------------------------


@pytest.fixture
async def metrics() -> AsyncIterator[Metrics]:
    m = Metrics(CollectorRegistry())
    yield m
    await m.close()


async def test_serves_its_own_registry_on_a_free_port_and_stops(metrics: Metrics) -> None:
    port = await metrics.serve("127.0.0.1:0")
    metrics.rpc_finished("/x.S/Get", "OK", 0.01)
    metrics.rpc_started("/x.S/WatchJobs")
    samples = await asyncio.to_thread(scrape, port)
    assert value(samples, "hpcgate_rpcs_total", method="/x.S/Get", code="OK") == 1
    assert value(samples, "hpcgate_rpc_duration_seconds_count", method="/x.S/Get") == 1
    assert value(samples, "hpcgate_open_streams", kind="WatchJobs") == 1
    assert value(samples, "hpcgate_rpcs_total", method="/x.S/WatchJobs") == 0
    await metrics.close()
    with pytest.raises(ConnectionRefusedError):  # nobody listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


async def test_serves_on_ipv6_loopback_and_by_host_name(metrics: Metrics) -> None:
    port = await metrics.serve("[::1]:0")
    metrics.rpc_finished("/x.S/Get", "OK", 0.01)
    with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=10) as reply:
        assert b"hpcgate_rpcs_total" in reply.read()
    await metrics.close()
    named = Metrics(CollectorRegistry())
    port = await named.serve("localhost:0")
    named.rpc_finished("/x.S/Get", "OK", 0.01)
    try:
        assert "hpcgate_rpcs_total" in str(await asyncio.to_thread(scrape, port))
    finally:
        await named.close()


async def test_a_taken_port_is_logged_not_fatal(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with caplog.at_level(logging.ERROR, "hpcgate.server.metrics"):
            assert await metrics.serve(address) == 0
    assert "METRICS NOT SERVED" in caplog.text
    assert await metrics.serve("") == 0  # off


def test_unexposed_metrics_record_into_nothing_and_never_clash() -> None:
    first, second = Metrics.unexposed(), Metrics.unexposed()
    first.rpc_finished("/x.S/Get", "OK", 0.1)
    second.track_tasks(lambda: 1, lambda: 2)
    assert first.registry is None and second.registry is None


LABELS = {"user_class": "user", "method": "/hpcgate.v1.ComputeService/SubmitJob"}


def test_rate_limited_is_one_counter_every_gateway_exposes() -> None:
    registries = [CollectorRegistry(), CollectorRegistry()]
    for registry in registries:
        Metrics(registry)
    before = [r.get_sample_value("hpcgate_rate_limited_total", LABELS) or 0 for r in registries]
    RATE_LIMITED.labels(**LABELS).inc()
    after = [r.get_sample_value("hpcgate_rate_limited_total", LABELS) for r in registries]
    assert after == [b + 1 for b in before]


# -- a real gateway -----------------------------------------------------------------------


@pytest.fixture
def alice_dir() -> Iterator[Path]:
    with user_dir("alice") as path:
        yield path


async def test_a_workflow_moves_the_counters(
    slurm_cluster: None, gateway_factory: GatewayFactory, alice_dir: Path
) -> None:
    gateway = await gateway_factory()
    assert gateway.metrics_port > 0
    md = bearer(gateway, "alice", ("read", "write", "execute"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        await status_pb2_grpc.StatusServiceStub(channel).ListSystems(
            status_pb2.ListSystemsRequest()
        )
        compute = compute_pb2_grpc.ComputeServiceStub(channel)
        submitted = await compute.SubmitJob(
            c.SubmitJobRequest(parent="systems/local", script="#!/bin/sh\ntrue\n"), metadata=md
        )
        await compute.GetJob(c.GetJobRequest(name=submitted.job.name), metadata=md)
        await watch_briefly(gateway, compute, md)
        await copy_a_file(channel, md, alice_dir)
    samples = await scraped(gateway)
    assert_rpcs_and_slurm_counted(samples)
    assert value(samples, "hpcgate_job_polls_total", system="local") > 0
    assert value(samples, "hpcgate_job_poll_interval_seconds", system="local") >= 1.0
    assert value(samples, "hpcgate_job_reads_total", system="local") >= 1
    assert value(samples, "hpcgate_privsep_workers") >= 1
    assert value(samples, "hpcgate_transfer_bytes_total") == 4096
    ended = {"kind": "transfer", "state": "SUCCEEDED"}
    assert value(samples, "hpcgate_task_duration_seconds_count", **ended) == 1
    assert value(samples, "hpcgate_tasks", state="running") == 0


def assert_rpcs_and_slurm_counted(samples: Samples) -> None:
    for method in (
        "StatusService/ListSystems",
        "ComputeService/SubmitJob",
        "ComputeService/GetJob",
    ):
        ok = {"method": f"/hpcgate.v1.{method}", "code": "OK"}
        assert value(samples, "hpcgate_rpcs_total", **ok) >= 1, method
        assert value(samples, "hpcgate_rpc_duration_seconds_count", **ok) >= 1, method
    for command in ("sbatch", "squeue", "scontrol"):
        assert value(samples, "hpcgate_slurm_commands_total", command=command) >= 1, command
        timed = value(samples, "hpcgate_slurm_command_duration_seconds_count", command=command)
        assert timed >= 1, command


async def watch_briefly(
    gateway: Gateway, compute: compute_pb2_grpc.ComputeServiceStub, md: list[tuple[str, str]]
) -> None:
    """A WatchJobs stream counts as open while it is, and no longer once cancelled."""
    stream = compute.WatchJobs(c.WatchJobsRequest(parent="systems/local"), metadata=md)
    await stream.read()  # the stream is established
    assert value(await scraped(gateway), "hpcgate_open_streams", kind="WatchJobs") == 1
    stream.cancel()
    for _ in range(100):
        samples = await scraped(gateway)
        if value(samples, "hpcgate_open_streams", kind="WatchJobs") == 0:
            break
        await asyncio.sleep(0.1)
    assert value(samples, "hpcgate_open_streams", kind="WatchJobs") == 0
    watch = {"method": "/hpcgate.v1.ComputeService/WatchJobs", "code": "CANCELLED"}
    assert value(samples, "hpcgate_rpcs_total", **watch) == 1


async def copy_a_file(
    channel: grpc.aio.Channel, md: list[tuple[str, str]], alice_dir: Path
) -> None:
    make_owned(alice_dir / "in.dat", "alice", 0o600, b"x" * 4096)
    request = s.StartTransferRequest(
        kind=t.TRANSFER_KIND_COPY,
        source=t.TransferEndpoint(system="local", path=f"{alice_dir}/in.dat"),
        destination=t.TransferEndpoint(system="local", path=f"{alice_dir}/out.dat"),
    )
    started = await storage_pb2_grpc.StorageServiceStub(channel).StartTransfer(request, metadata=md)
    task = await wait_task(channel, md, started.task.name)
    assert task.state == t.TASK_STATE_SUCCEEDED, task.error.message


async def test_gateways_in_one_process_count_apart(
    slurm_cluster: None, gateway_factory: GatewayFactory
) -> None:
    first, second = await gateway_factory(), await gateway_factory()
    assert first.metrics_port != second.metrics_port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
        for _ in range(3):
            await status_pb2_grpc.StatusServiceStub(channel).ListSystems(
                status_pb2.ListSystemsRequest()
            )
    listed = {"method": "/hpcgate.v1.StatusService/ListSystems"}
    assert value(await scraped(first), "hpcgate_rpcs_total", **listed) == 3
    assert value(await scraped(second), "hpcgate_rpcs_total", **listed) == 0


async def test_metrics_can_be_off(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    base = fast_config(tmp_path)
    gateway = await gateway_factory(replace(base, metrics=config.MetricsConfig(listen="")))
    assert gateway.metrics_port == 0
