"""The public status page in a real browser: Debian's Chromium, headless, driven by
selenium, loads http://<gateway>/, shows system `local` ACTIVE from the WatchSystems
stream (Connect, from the browser client built by `make web`), and follows it live to
UNAVAILABLE when slurmctld stops and back to ACTIVE when it starts, without a reload.
Screenshots of each state are saved under test-artifacts/ (the page as a user saw it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import IN_CI, cluster
from hpcgate.server.app import Gateway

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("HPCGATE_ARTIFACTS", ROOT / "test-artifacts"))
BUNDLE = ROOT / "server" / "hpcgate" / "server" / "web" / "static" / "status.js"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (scripts/browser.sh installs it) with the flags this closed
    network needs (no background connections), a fresh profile, driven by chromedriver."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "browser.sh")], capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        if IN_CI:
            raise RuntimeError(f"scripts/browser.sh failed: {done.stderr[-2000:]}")
        pytest.skip(f"Chromium is not available: {done.stderr.strip()[-300:]}")
    if not BUNDLE.exists():
        raise RuntimeError(f"{BUNDLE} is missing: `make web` builds it (make test does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hpcgate-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1100,900",
    ):  # fmt: skip
        options.add_argument(flag)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


async def shown_state(driver: Any, system: str) -> tuple[str | None, str]:
    """The page's state of `system` (its data-state) and the text shown for it. Selenium
    blocks, so it runs in a thread: the gateway under test serves from this loop."""

    def read() -> tuple[str | None, str]:
        found = driver.find_elements("css selector", f'[data-system="{system}"]')
        if not found:
            return None, ""
        return found[0].get_attribute("data-state"), found[0].text

    return await asyncio.to_thread(read)


async def until_state(driver: Any, system: str, state: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen: tuple[str | None, str] = (None, "")
    while time.monotonic() < deadline:
        seen = await shown_state(driver, system)
        if seen[0] == state:
            return seen[1]
        await asyncio.sleep(0.2)
    raise AssertionError(f"the page shows {system} as {seen[0]!r}, not {state}: {seen[1]!r}")


async def screenshot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"status-page-{name}.png"
    assert await asyncio.to_thread(driver.save_screenshot, str(path))
    assert path.stat().st_size > 1000


@pytest.mark.timeout(300)
async def test_the_page_follows_the_system_live_through_a_controller_outage(
    gateway: Gateway, browser: Any, restore_slurmctld: None
) -> None:
    await asyncio.to_thread(browser.get, f"http://127.0.0.1:{gateway.http_port}/")
    text = await until_state(browser, "local", "ACTIVE", 30)
    assert "Active" in text or "ACTIVE" in text  # a word, not only a colour
    connected = await asyncio.to_thread(
        lambda: browser.find_element("css selector", "#connection").get_attribute("data-connected")
    )
    assert connected == "true"
    await screenshot(browser, "active")
    loaded_at = await asyncio.to_thread(browser.execute_script, "return performance.timeOrigin")

    await asyncio.to_thread(cluster, "stop", "slurmctld")
    text = await until_state(browser, "local", "UNAVAILABLE", 60)
    assert "navailable" in text or "NAVAILABLE" in text
    await screenshot(browser, "unavailable")

    await asyncio.to_thread(cluster, "start", "slurmctld")
    await until_state(browser, "local", "ACTIVE", 90)
    await screenshot(browser, "active-again")
    # Followed live: the same page load throughout, no reload.
    assert await asyncio.to_thread(browser.execute_script, "return performance.timeOrigin") == (
        loaded_at
    )


async def test_the_page_is_built_to_be_read_by_everyone(gateway: Gateway, browser: Any) -> None:
    """Semantic landmarks, a language, one main heading, and states named in words."""
    await asyncio.to_thread(browser.get, f"http://127.0.0.1:{gateway.http_port}/")
    await until_state(browser, "local", "ACTIVE", 30)

    def audit() -> dict[str, Any]:
        script = """return {
            lang: document.documentElement.lang,
            h1: document.querySelectorAll('h1').length,
            main: document.querySelectorAll('main').length,
            live: document.querySelectorAll('[aria-live]').length,
            title: document.title,
        }"""
        result: dict[str, Any] = browser.execute_script(script)
        return result

    audit_result = await asyncio.to_thread(audit)
    assert audit_result["lang"]
    assert audit_result["h1"] == 1
    assert audit_result["main"] == 1
    assert audit_result["live"] >= 1
    assert audit_result["title"]
    logs = await asyncio.to_thread(browser.get_log, "browser")
    severe = [entry for entry in logs if entry.get("level") == "SEVERE"]
    assert not severe, severe
