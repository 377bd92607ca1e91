"""Accounting parsers on recorded Slurm 22.05 output (sacctmgr, sshare, sreport)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hpcgate.server.accounts.projects import usage_period
from hpcgate.server.slurm.parsing import (
    parse_accounts,
    parse_cluster_name,
    parse_fair_share,
    parse_tres,
    parse_tres_used,
    parse_usage,
    parse_user_associations,
    parse_user_default_account,
    parse_wall_seconds,
)

DATA = Path(__file__).parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_tres_strings_become_maps_with_memory_in_mib() -> None:
    assert parse_tres("cpu=8,mem=8000M,gres/gpu=2") == {"cpu": 8, "mem": 8000, "gres/gpu": 2}
    assert parse_tres("mem=4G,node=1") == {"mem": 4096, "node": 1}
    assert parse_tres("mem=2T") == {"mem": 2 * 1024 * 1024}
    assert parse_tres("mem=1.5G") == {"mem": 1536}
    assert parse_tres("mem=2048K") == {"mem": 2}
    assert parse_tres("") == {}
    assert parse_tres("cpu=,=3,junk,gres/gpu:a100=4") == {"gres/gpu:a100": 4}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1-12:30:00", (36 * 60 + 30) * 60),
        ("12:30:00", (12 * 60 + 30) * 60),
        ("2-00:00:00", 2 * 86400),
        ("30:00", 30 * 60),
        ("1-06:00", 30 * 3600),
        ("90", 90 * 60),
        ("", None),
        ("UNLIMITED", None),
        ("INFINITE", None),
        ("soon", None),
    ],
)
def test_wall_limits(text: str, seconds: int | None) -> None:
    assert parse_wall_seconds(text) == seconds


def test_default_account() -> None:
    assert parse_user_default_account(read("sacctmgr-user-alice-22.05.txt")) == "alpha"
    assert parse_user_default_account("") == ""  # no Slurm user record
    assert parse_user_default_account("bob|\n") == ""  # a record without one on the cluster


def test_user_associations_without_limits() -> None:
    assoc = parse_user_associations(read("sacctmgr-user-withassoc-bob-22.05.txt"), "bob")
    assert assoc.default_account == "beta"
    assert [a.account for a in assoc.associations] == ["beta", "alpha"]
    a = assoc.associations[0]
    assert (a.user, a.cluster, a.partition, a.qos, a.default_qos) == (
        "bob",
        "hpcgate",
        "",
        ("normal",),
        "",
    )
    assert a.group_tres == {} and a.max_tres_per_job == {}
    assert a.max_wall_seconds is None and a.max_jobs is None and a.group_submit_jobs is None


def test_user_associations_with_every_limit() -> None:
    assoc = parse_user_associations(read("sacctmgr-user-withassoc-limits-22.05.txt"), "root")
    alpha = next(a for a in assoc.associations if a.account == "alpha")
    assert alpha.default_qos == "normal"
    assert alpha.group_tres == {"cpu": 8, "mem": 8000}
    assert alpha.group_tres_minutes == {"cpu": 60000, "mem": 2 * 1024 * 1024}
    assert alpha.max_tres_per_job == {"cpu": 4, "mem": 4096, "node": 1}
    assert alpha.max_tres_per_node == {"cpu": 2, "mem": 512}
    assert alpha.max_wall_seconds == (36 * 60 + 30) * 60
    assert (alpha.max_jobs, alpha.max_submit_jobs, alpha.group_jobs, alpha.group_submit_jobs) == (
        10,
        20,
        5,
        50,
    )
    root = next(a for a in assoc.associations if a.account == "root")
    assert root.group_tres == {} and root.max_jobs is None


def test_per_partition_associations() -> None:
    assoc = parse_user_associations(read("sacctmgr-user-withassoc-partition-22.05.txt"), "root")
    alpha = [a for a in assoc.associations if a.account == "alpha"]
    assert sorted(a.partition for a in alpha) == ["", "long"]
    long = next(a for a in alpha if a.partition == "long")
    assert long.max_wall_seconds == 2 * 86400 and long.max_jobs == 3


def test_user_without_associations_on_the_cluster() -> None:
    assoc = parse_user_associations("bob|||" + "|" * 12 + "\n", "bob")
    assert assoc.associations == () and assoc.default_account == ""
    assert parse_user_associations("", "nobody").associations == ()


def test_accounts_with_descriptions_and_parents() -> None:
    accounts = {a.name: a for a in parse_accounts(read("sacctmgr-account-22.05.txt"))}
    assert set(accounts) == {"alpha", "beta"}
    # sacctmgr stores the ' of "alice and bob's project" as a backtick.
    assert accounts["alpha"].description == "alice and bob's project"
    assert accounts["beta"].description == "bob's second project"
    assert accounts["alpha"].organization == "hpcgate"
    assert accounts["alpha"].parent == "root" and accounts["alpha"].cluster == "hpcgate"
    assert accounts["alpha"].coordinators == ("alice",) and not accounts["beta"].coordinators


def test_accounts_skip_user_rows_and_accounts_off_the_cluster() -> None:
    out = (
        "alpha|hpcgate||root|hpcgate|cpu=6000|alice,carol|a|b|c\n"  # "|" in the description
        "alpha|hpcgate|bob||hpcgate|||a\n"  # a user's association
        "beta|||||||\n"  # no association on the queried cluster
    )
    accounts = parse_accounts(out)
    assert [(a.name, a.description) for a in accounts] == [("alpha", "a|b|c")]
    assert accounts[0].coordinators == ("alice", "carol")
    assert accounts[0].group_tres_minutes == {"cpu": 6000}


def test_allocation_usage_is_the_accounts_own_sshare_row() -> None:
    out = "alpha||cpu=1234,mem=0,billing=99\n alpha|alice|cpu=1000\nbeta||cpu=0\n"
    assert parse_tres_used(out) == {"alpha": {"cpu": 1234, "mem": 0, "billing": 99},
                                    "beta": {"cpu": 0}}  # fmt: skip


def test_fair_share_under_priority_basic_is_not_computed() -> None:
    shares = parse_fair_share(read("sshare-bob-22.05.txt"))
    assert [(s.account, s.user) for s in shares] == [("alpha", "bob"), ("beta", "bob")]
    assert shares[0].raw_shares == 1 and shares[0].raw_usage == 0
    assert shares[0].normalized_shares is None and shares[0].fairshare_factor is None


def test_fair_share_per_partition_and_multifactor_shape() -> None:
    shares = parse_fair_share(read("sshare-partition-22.05.txt"))
    assert ("alpha", "long") in {(s.account, s.partition) for s in shares}
    # The shape sshare prints under priority/multifactor (same fields, all computed),
    # after the `CLUSTER: name` line that -M adds.
    out = (
        "CLUSTER: hpcgate\n"
        "alpha|alice||10|0.250000|7200|0.125000|0.640000\n"
        "beta|bob||parent|0.5|1|0.0|1.0\n"
    )
    shares = parse_fair_share(out)
    assert len(shares) == 2
    alice = shares[0]
    assert (alice.raw_shares, alice.normalized_shares, alice.raw_usage) == (10, 0.25, 7200)
    assert (alice.effective_usage, alice.fairshare_factor) == (0.125, 0.64)
    assert shares[1].raw_shares == 0  # Fairshare=parent


def test_usage_rows() -> None:
    records = parse_usage(read("sreport-account-utilization-22.05.txt"))
    totals = {(r.account, r.user, r.tres): r.tres_seconds for r in records}
    assert totals[("alpha", "", "cpu")] >= totals[("alpha", "alice", "cpu")] > 0
    assert totals[("beta", "", "cpu")] >= totals[("beta", "bob", "cpu")] > 0
    assert all(r.tres == "cpu" for r in records)  # gres/gpu is not tracked on this machine
    assert parse_usage("") == []
    gpu = parse_usage("alpha||gres/gpu|7200\nalpha|alice|gres/gpu|3600\n")
    assert [(r.user, r.tres, r.tres_seconds) for r in gpu] == [
        ("", "gres/gpu", 7200),
        ("alice", "gres/gpu", 3600),
    ]


def test_cluster_name() -> None:
    config = "Configuration data as of 2026-11-21T05:00:00\nClusterName             = hpcgate\n"
    assert parse_cluster_name(config) == "hpcgate"
    assert parse_cluster_name("nothing here") == ""


def test_usage_period_is_the_month_so_far_in_whole_hours() -> None:
    now = datetime(2026, 11, 21, 5, 27, 13, tzinfo=UTC)
    start, end = usage_period(now)
    assert end.astimezone().minute == 0 and timedelta(0) <= now - end < timedelta(hours=1)
    local_start = start.astimezone()
    assert (local_start.day, local_start.hour, local_start.minute) == (1, 0, 0)
    assert timedelta(0) <= end - start < timedelta(days=31)
    # In the first hour of a month the period is empty, not negative.
    first = usage_period(datetime(2026, 12, 1, 0, 30, tzinfo=UTC).astimezone())
    assert first[0] <= first[1]
