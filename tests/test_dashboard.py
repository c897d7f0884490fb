"""The dashboard in a real browser (the system's headless Chromium through Playwright) and the SSE
endpoint over plain HTTP, against a real stack: Temporal dev server, worker, uvicorn on 127.0.0.1.

Screenshots of every step land in test-artifacts/dashboard/. Every request the pages make is
recorded, and each test ends by checking that none left 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from agentgate import service
from agentgate.demo.sample_repo import GATE_COMMAND, TASK_PROMPT
from tests.conftest import DEMO_AGENT, free_port, running_worker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "dashboard"
FAKE_BIN = Path(__file__).parent / "fixtures" / "bin"
TERMINAL = {"run_completed", "run_canceled", "run_failed"}

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (scripts/install-system-packages.sh adds it)"
)


@asynccontextmanager
async def api_server(env, settings):
    """The real app on a free loopback port; a short graceful timeout so an open stream cannot hold shutdown."""
    from agentgate.embedded import _QuietServer
    from api.app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(settings, client=env.client),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    finally:
        server.should_exit = True
        await task


def _base(http: httpx.AsyncClient) -> str:
    return str(http.base_url).rstrip("/")


def _body(repo, **overrides) -> dict:
    body = {
        "task_prompt": TASK_PROMPT,
        "workspace_source": {"type": "local", "path": str(repo)},
        "agent": {"driver": "command", "command": DEMO_AGENT},
        "gates": [GATE_COMMAND],
        "labels": ["dash-test"],
    }
    body.update(overrides)
    return body


async def _read_stream(http: httpx.AsyncClient, url: str, headers: dict | None = None, timeout: float = 60):
    """Every SSE event of one connection until the server ends it: [(id, event, data)]."""
    events, block = [], {}
    async with asyncio.timeout(timeout):
        async with http.stream("GET", url, headers=headers or {}) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if not line:
                    if "data" in block:
                        events.append((int(block["id"]), block["event"], json.loads(block["data"])))
                    block = {}
                elif not line.startswith(":"):
                    field, _, value = line.partition(":")
                    block[field] = value.removeprefix(" ")
    return events


# -- SSE and artifacts over plain HTTP ---------------------------------------------------------------


async def test_sse_replays_then_resumes_after_last_event_id(dev_env, settings, sample_repo):
    async with running_worker(dev_env, settings), api_server(dev_env, settings) as http:
        created = await http.post("/api/v1/work-orders", json=_body(sample_repo, labels=["sse-test"]))
        wo_id = created.json()["id"]
        url = f"/api/v1/work-orders/{wo_id}/events"

        # Opened while the run is going: replay, then live, and the server ends it at the run's end.
        full = await _read_stream(http, url)
        seqs = [seq for seq, _, _ in full]
        assert seqs == list(range(1, len(full) + 1)), seqs
        assert full[-1][1] == "run_completed" and full[-1][2]["result"] == "passed"
        assert all(data["seq"] == seq and data["type"] == kind for seq, kind, data in full)
        kinds = {kind for _, kind, _ in full}
        assert {"run_started", "phase_started", "agent_output", "gate_checked", "iteration_completed"} <= kinds
        n = len(full) // 2

    # A new API process (same artifact store) resumes exactly after N: no loss, no duplicate.
    async with api_server(dev_env, settings) as http:
        resumed = await _read_stream(http, url, headers={"Last-Event-ID": str(n)})
        assert [e[0] for e in resumed] == seqs[n:]
        assert resumed == full[n:]
        assert [e[0] for e in await _read_stream(http, f"{url}?after={n}")] == seqs[n:]
        assert await _read_stream(http, url, headers={"Last-Event-ID": str(seqs[-1])}, timeout=10) == []
        replay = await _read_stream(http, f"{url}?follow=false")
        assert replay == full

        bad = await http.get(url, headers={"Last-Event-ID": "nope"})
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "header.last-event-id"
        missing = await http.get("/api/v1/work-orders/wo_0000000000nothere/events")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

        # The run folder's files, for the dashboard's links; nothing outside it.
        listing = (await http.get(f"/api/v1/work-orders/{wo_id}/artifacts")).json()
        names = {item["name"] for item in listing["items"]}
        assert {"run.json", "events.jsonl", "patch-1.diff", "feedback-1.md", "gate-1-1.log"} <= names
        patch = await http.get(f"/api/v1/work-orders/{wo_id}/artifacts/patch-1.diff")
        assert patch.status_code == 200 and patch.headers["content-type"].startswith("text/plain")
        assert patch.headers["x-content-type-options"] == "nosniff" and "+++ " in patch.text
        run = await http.get(f"/api/v1/work-orders/{wo_id}/artifacts/run.json")
        assert run.headers["content-type"] == "application/json" and run.json()["result"] == "passed"
        for name in ("..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "nope.json", ".hidden"):
            response = await http.get(f"/api/v1/work-orders/{wo_id}/artifacts/{name}")
            assert response.status_code == 404, (name, response.text)

        # The list's new filters go to Temporal visibility.
        for params, expected in (
            ({"label": "sse-test"}, True),
            ({"label": "other"}, False),
            ({"agent": "command", "label": "sse-test"}, True),
            ({"agent": "codex", "label": "sse-test"}, False),
            ({"repository": str(sample_repo)}, True),
        ):
            ids = [i["id"] for i in (await http.get("/api/v1/work-orders", params=params)).json()["items"]]
            assert (wo_id in ids) is expected, params
        quote = await http.get("/api/v1/work-orders", params={"label": 'x" OR "1'})
        assert quote.status_code == 422 and quote.json()["error"]["details"][0]["field"] == "query.label"


# -- the dashboard in Chromium ------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def browser():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (scripts/install-system-packages.sh adds it)")
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@asynccontextmanager
async def open_page(browser, requests: list[str]):
    """A fresh page; confirm() dialogs are accepted and every request is recorded."""
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    page.on("request", lambda request: requests.append(request.url))
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(30_000)
    try:
        yield page
        assert not errors, errors
    finally:
        await context.close()


def assert_only_loopback(requests: list[str]) -> None:
    assert requests, "no request was recorded"
    outside = [url for url in requests if urlsplit(url).hostname != "127.0.0.1"]
    assert not outside, outside


async def shot(page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@needs_chromium
async def test_submit_through_the_form_and_watch_the_run_live(dev_env, settings, sample_repo, browser):
    requests: list[str] = []
    async with running_worker(dev_env, settings), api_server(dev_env, settings) as http:
        base = _base(http)
        # A user profile chosen in the form: its values fill what the form leaves empty (docs/profiles.md).
        profile = {"name": "dash-form", "extends": "default", "max_iterations": 4, "max_wall_clock_seconds": 900}
        assert (await http.post("/api/v1/profiles", json=profile)).status_code == 201
        async with open_page(browser, requests) as page:
            await page.goto(f"{base}/submit")
            await page.get_by_label("Harness profile").select_option("dash-form")
            await page.locator("#hint-profile", has_text="dash-form → default").wait_for()
            assert await page.get_by_label("Max iterations").get_attribute("placeholder") == "4"
            await page.get_by_label("Task prompt").fill(TASK_PROMPT)
            await page.get_by_label("Local repository path").fill(str(sample_repo))
            await page.get_by_label("Agent driver").select_option("command")
            # A short pause before the agent starts, so the page is seen while the run is still building.
            await page.get_by_label("Agent command").fill(f"sleep 1.5 && {DEMO_AGENT}")
            await page.get_by_label("Gates (one command per line)").fill(GATE_COMMAND)
            await page.get_by_label("Labels").fill("dash-ui, form")
            await shot(page, "01-submit-form")
            await page.get_by_role("button", name="Submit").click()
            await page.wait_for_url("**/work-orders/wo_*")
            wo_id = page.url.rsplit("/", 1)[1]

            # Live: the build has started and the run is still running.
            await page.locator("#log [data-type=phase_started]").first.wait_for()
            await page.locator("#wo-status", has_text="running").wait_for()
            await shot(page, "02-run-live")
            log = page.locator("#log")
            await log.locator(".ev-output", has_text="demo-agent: implemented add").wait_for()
            await log.locator(".ev-output", has_text="demo-agent: implemented multiply").wait_for()
            await page.locator("#wo-status", has_text="succeeded · passed").wait_for()
            await page.locator("#stream-state", has_text="run ended").wait_for()

            # The timeline: two iterations, the first failed its test gate, the second passed.
            await page.locator("#timeline .iter").nth(1).wait_for()
            assert await page.locator("#timeline .iter").count() == 2
            first = page.locator("#iter-1")
            await first.locator("[data-gate='python3 -m unittest -v test_mathlib'][data-passed=false]").wait_for()
            assert await page.locator("#iter-2 .badge", has_text="passed").count() == 1
            await first.locator("details[data-artifact='patch-1.diff'] > summary").click()
            await first.locator("details[data-artifact='patch-1.diff'] pre .add").first.wait_for()
            await first.locator("details[data-artifact='feedback-1.md'] > summary").click()
            await first.locator("details[data-artifact='feedback-1.md'] pre", has_text="test_multiply").wait_for()
            await first.locator("details[data-artifact='gate-1-1.log'] > summary").click()
            await first.locator("details[data-artifact='gate-1-1.log'] pre", has_text="NotImplementedError").wait_for()
            assert await page.get_by_test_id("branch").inner_text() == f"agentgate/{wo_id}"
            assert await page.get_by_test_id("iterations").inner_text() == "2 / 4"  # the profile's limit
            resolved = (await http.get("/api/v1/profiles/dash-form", params={"resolve": "true"})).json()
            order = await service.original_work_order(dev_env.client, wo_id)
            assert (order.profile, order.profile_hash) == ("dash-form", resolved["hash"])
            assert (order.max_iterations, order.max_wall_clock_seconds) == (4, 900)
            assert [g.command for g in order.gates] == [GATE_COMMAND]  # the form's field overrides the profile
            assert (await page.get_by_test_id("profile").inner_text()).startswith("dash-form · ")
            assert await page.get_by_role("link", name="Temporal Web UI").get_attribute("href")
            assert await page.locator("#artifacts a", has_text="patch-2.diff").count() == 1
            # Each event was shown once, in order, although the stream was read live.
            seqs = [int(s) for s in await log.locator(".ln").evaluate_all("els => els.map(e => e.dataset.seq)")]
            assert seqs == list(range(1, len(seqs) + 1))
            await shot(page, "03-run-passed")

            # The queue page lists it; the label filter is applied by the server.
            await page.goto(f"{base}/?label=dash-ui")
            await page.locator(f"tr[data-id='{wo_id}'][data-status=succeeded]").wait_for()
            await page.get_by_label("Label").fill("no-such-label")
            await page.get_by_role("button", name="Apply").click()
            await page.locator("#empty").wait_for(state="visible")
            await shot(page, "04-queue-filtered")
    assert_only_loopback(requests)


@needs_chromium
async def test_form_shows_validation_errors_at_their_fields(dev_env, settings, tmp_path, browser):
    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    requests: list[str] = []
    async with api_server(dev_env, settings) as http:
        async with open_page(browser, requests) as page:
            await page.goto(f"{_base(http)}/submit")
            await page.get_by_label("Local repository path").fill(str(plain))
            await page.get_by_label("Agent command").fill("true")
            await page.get_by_role("button", name="Submit").click()
            prompt_error = page.locator("[id='err-task_prompt']")
            await prompt_error.wait_for()
            assert "must not be empty" in await prompt_error.inner_text()
            assert await page.get_by_label("Task prompt").get_attribute("aria-invalid") == "true"

            await page.get_by_label("Task prompt").fill("Fix it")
            await page.get_by_role("button", name="Submit").click()
            path_error = page.locator("[id='err-workspace_source.path']")
            await path_error.filter(has_text="not a git repository").wait_for()
            assert await prompt_error.is_hidden()
            assert await page.get_by_label("Local repository path").get_attribute("aria-invalid") == "true"
            assert page.url.endswith("/submit")
            await shot(page, "05-submit-422")
    assert_only_loopback(requests)


@needs_chromium
async def test_cancel_a_running_order_from_its_page(dev_env, settings, sample_repo, browser):
    requests: list[str] = []
    async with running_worker(dev_env, settings), api_server(dev_env, settings) as http:
        body = _body(sample_repo, agent={"driver": "command", "command": "echo waiting; sleep 300"})
        wo_id = (await http.post("/api/v1/work-orders", json=body)).json()["id"]
        async with open_page(browser, requests) as page:
            await page.goto(f"{_base(http)}/work-orders/{wo_id}")
            await page.locator("#log .ev-output", has_text="waiting").wait_for()
            await page.locator("#wo-status", has_text="running").wait_for()
            await shot(page, "06-running-before-cancel")
            # With an API key saved, every call carries it.
            await page.get_by_label("API key").fill("dash-key")
            await page.get_by_role("button", name="Save").click()
            async with page.expect_request(lambda r: r.method == "DELETE") as canceling:
                await page.get_by_role("button", name="Cancel").click()  # confirm() is accepted
            assert (await canceling.value).headers.get("authorization") == "Bearer dash-key"
            await page.locator("#wo-status.canceled").wait_for()  # the status itself, not only the result
            await page.locator("#log [data-type=run_canceled]").wait_for()
            assert await page.get_by_role("button", name="Cancel").is_disabled()
            await shot(page, "07-canceled")

            # Re-run starts a new run on the same page (a fresh stream), and Kill ends it at once.
            first_run = await page.get_by_test_id("run").inner_text()
            await page.get_by_role("button", name="Re-run").click()
            await page.locator("#wo-status.running").wait_for()
            await page.locator("#log .ev-output", has_text="waiting").wait_for()
            assert await page.get_by_test_id("run").inner_text() != first_run
            await page.get_by_label("Kill reason").fill("stuck in the dashboard test")
            await page.get_by_role("button", name="Kill").click()
            await page.locator("#wo-status.failed").wait_for()
            assert "terminated" in await page.locator("#summary").inner_text()
            await shot(page, "07b-rerun-killed")

            await page.goto(f"{_base(http)}/?status=failed&label=dash-test")
            await page.locator(f"tr[data-id='{wo_id}'][data-status=failed]").wait_for()
            await shot(page, "08-queue-failed")
        runs = (await http.get(f"/api/v1/work-orders/{wo_id}/runs")).json()["items"]
        assert [r["execution_status"] for r in runs] == ["canceled", "terminated"]
    assert_only_loopback(requests)


@needs_chromium
@pytest.mark.skipif(not (FAKE_BIN / "claude").exists(), reason="the fake claude CLI is not in tests/fixtures/bin")
async def test_tool_calls_tokens_and_cost_stream_in(dev_env, settings, sample_repo, browser, monkeypatch):
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    requests: list[str] = []
    async with running_worker(dev_env, settings), api_server(dev_env, settings) as http:
        body = _body(sample_repo, agent={"driver": "claude-code"})
        wo_id = (await http.post("/api/v1/work-orders", json=body)).json()["id"]
        async with open_page(browser, requests) as page:
            await page.goto(f"{_base(http)}/work-orders/{wo_id}")
            await page.locator("#log [data-type=agent_tool_call]").first.wait_for()
            await page.locator("#log [data-type=agent_message]").first.wait_for()
            await page.locator("#wo-status", has_text="succeeded · passed").wait_for()
            await page.locator("#iter-2").wait_for()
            assert await page.get_by_test_id("cost").inner_text() != "$0.0000"
            assert not (await page.get_by_test_id("tokens").inner_text()).startswith("0")
            await page.get_by_label("tool calls").uncheck()  # the filter hides, the area keeps its size
            assert await page.locator("#log [data-type=agent_tool_call]").first.is_hidden()
            assert (await page.locator("#log").bounding_box())["height"] > 200
            await shot(page, "09-tool-calls-and-cost")
    assert_only_loopback(requests)
