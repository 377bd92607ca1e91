"""Slurm accounts and QOS that tests make for themselves, and their removal.

`tests/test_compute.py`'s `limited_account` adds an account and two QOS with limits. A
run that fails to remove them would leave alice an extra association, which other tests
(and the Slurm 24.11 run's accounting tests) would see; so every session removes what an
earlier one left behind before its first test (`slurm_cluster`, `test_pyslurm_live`).
"""

from __future__ import annotations

import subprocess
import time

import pytest

# Name prefixes of what `limited_account` adds (a random tag follows).
LIMIT_ACCOUNT, COUNTED_QOS, SHORT_QOS = "hpcgate-lim-", "hpcgate-sub1-", "hpcgate-wall-"


def sacctmgr_delete(*args: str, within: float = 30.0) -> None:
    """`sacctmgr delete ...`, retried while slurmdbd still counts a cancelled job as
    active: squeue forgets a cancelled job before slurmdbd records its end, and until
    then sacctmgr refuses to remove its association ("Job(s) active"). The failing
    attempt's output is kept in the test's failure."""
    deadline, tried = time.monotonic() + within, False
    while True:
        done = subprocess.run(
            ["sacctmgr", "-i", "delete", *args], capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            return
        if tried and "Nothing deleted" in done.stdout + done.stderr:
            return  # an earlier attempt was carried out after all (e.g. a slow slurmdbd)
        tried = True
        if time.monotonic() > deadline:
            pytest.fail(f"sacctmgr delete {' '.join(args)}: {done.stdout}{done.stderr}")
        time.sleep(0.5)


def sacctmgr_names(*args: str) -> list[str]:
    listed = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", *args], capture_output=True, text=True, check=True
    )
    return sorted({line for line in listed.stdout.splitlines() if line})


def remove_limit_accounts() -> None:
    """Remove every account and QOS `limited_account` made, with their associations:
    this test's, and any an earlier run failed to remove (one left behind would show
    as an extra association of alice's in other tests)."""
    for account in sacctmgr_names("account", "format=account"):
        if account.startswith(LIMIT_ACCOUNT):
            for user in sacctmgr_names("assoc", f"account={account}", "format=user"):
                sacctmgr_delete("user", user, "where", f"account={account}")
            sacctmgr_delete("account", account)
    stale = [
        q for q in sacctmgr_names("qos", "format=name") if q.startswith((COUNTED_QOS, SHORT_QOS))
    ]
    if stale:
        sacctmgr_delete("qos", *stale)
