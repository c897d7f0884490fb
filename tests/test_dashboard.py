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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from agentgate import queue, service
from agentgate.demo.sample_repo import GATE_COMMAND, TASK_PROMPT
from tests.conftest import DEMO_AGENT, free_port, running_worker
from workflows.admission import AdmissionState, Holder, QueueEntry, QueueSnapshot, admission_order, standing

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
            agent = (await http.get(f"/api/v1/work-orders/{wo_id}")).json()["history"][0]["agent"]
            assert agent["sandbox_provider"] and agent["sandbox_network"]  # recorded per iteration, and shown
            facts = await first.locator(".agent-facts").inner_text()
            assert f"sandbox {agent['sandbox_provider']} (network {agent['sandbox_network']})" in facts, facts
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


# -- the queue: the panel and the positions come from the admission queue -----------------------------


def test_the_queue_view_answers_what_the_position_query_answers():
    """`GET /api/v1/queue` (snapshot_view) against `standing`, the position query's own function, on a
    state where fairness keys reorder a priority: same positions, same estimates, for every order."""
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def entry(wo: str, seq: int, priority: int, key: str | None) -> QueueEntry:
        return QueueEntry(work_order_id=wo, run_id=f"r-{wo}", priority=priority, fairness_key=key, seq=seq,
                          enqueued_at=now - timedelta(seconds=100 - seq))  # fmt: skip

    waiting = [entry("a", 1, 3, "t1"), entry("b", 2, 3, "t1"), entry("c", 3, 3, "t2"), entry("d", 4, 1, None),
               entry("e", 5, 5, "t1"), entry("f", 6, 3, None)]  # fmt: skip
    holders = [Holder(entry=entry("h1", 0, 2, None), admitted_at=now - timedelta(seconds=40), grant=7),
               Holder(entry=entry("h2", 0, 4, "t2"), admitted_at=now - timedelta(seconds=5), grant=8)]  # fmt: skip
    state = AdmissionState(capacity=2, waiting=waiting, holders=holders, served={"t1": 3, "t2": 8},
                           hold_seconds=[30.0, 50.0], grants=8)  # fmt: skip
    snap = QueueSnapshot(capacity=2, waiting=admission_order(state.waiting, state.served), holders=state.holders,
                         average_hold_seconds=40.0, grants=8)  # fmt: skip
    view = queue.snapshot_view(snap, now)

    order = [p["work_order_id"] for p in view["positions"]]
    assert order == ["d", "a", "c", "f", "b", "e"]  # not priority-then-age (a, b, c, f): the keys take turns
    for place in view["positions"]:
        expected = queue.position_view(standing(state, place["work_order_id"]), now)
        got = {k: place[k] for k in ("position", "ahead", "priority", "fairness_key", "estimated_wait_seconds")}
        assert got == {k: expected[k] for k in got}, place
    assert [h["work_order_id"] for h in view["holders"]] == ["h1", "h2"]
    assert {h["position"] for h in view["holders"]} == {0}
    assert (view["queued"], view["running"], view["capacity"], view["free_slots"]) == (6, 2, 2, 0)
    assert view["by_priority"] == {"1": 1, "2": 0, "3": 4, "4": 0, "5": 1}
    assert view["oldest_wait_seconds"] == 99.0
    empty = queue.snapshot_view(QueueSnapshot(capacity=3), now)
    assert (empty["positions"], empty["holders"], empty["oldest_wait_seconds"]) == ([], [], None)


class HeldAgents:
    """Agents that hold their slot until the test creates go/<work-order id> (tests/test_queue.py does the same)."""

    def __init__(self, root: Path) -> None:
        self.log, self.go = root / "starts.log", root / "go"
        self.go.mkdir(parents=True)
        self.command = (
            f'echo "$AGENTGATE_WORK_ORDER_ID" >> {self.log}; '
            f'while [ ! -e {self.go}/"$AGENTGATE_WORK_ORDER_ID" ]; do sleep 0.05; done'
        )

    def started(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    async def wait_started(self, wo_id: str, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while wo_id not in self.started():
                await asyncio.sleep(0.1)

    def release(self, *wo_ids: str) -> None:
        for wo_id in wo_ids:
            (self.go / wo_id).touch()


@needs_chromium
async def test_queue_panel_positions_and_capacity_from_the_queue(dev_env, settings, sample_repo, browser, tmp_path):
    settings = settings.model_copy(update={"capacity": 1, "max_concurrent_agents": 3})
    agents = HeldAgents(tmp_path / "agents")
    requests: list[str] = []

    def held(priority: int, *labels: str) -> dict:
        # The agents meet the test in host files: a plain subprocess, not the default sandbox.
        return _body(sample_repo, agent={"driver": "command", "command": agents.command}, gates=["true"],
                     max_iterations=1, priority=priority, labels=["dash-queue", *labels],
                     sandbox={"provider": "none", "network": "full"})  # fmt: skip

    async with running_worker(dev_env, settings), api_server(dev_env, settings) as http:
        holder = (await http.post("/api/v1/work-orders", json=held(3))).json()["id"]
        await agents.wait_started(holder)
        low = (await http.post("/api/v1/work-orders", json=held(4, "dash-queue-low"))).json()
        high = (await http.post("/api/v1/work-orders", json=held(2))).json()
        assert (low["position"], high["position"]) == (1, 1)  # the more urgent one went ahead of it
        low, high = low["id"], high["id"]
        places = {wo: (await http.get(f"/api/v1/work-orders/{wo}/position")).json()["position"] for wo in (high, low)}
        assert places == {high: 1, low: 2}

        async with open_page(browser, requests) as page:
            await page.goto(f"{_base(http)}/?label=dash-queue")
            panel = page.locator(".queue-panel")
            await panel.get_by_test_id("queue-queued").filter(has_text="2").wait_for()
            assert await panel.get_by_test_id("queue-capacity").inner_text() == "1"
            assert await panel.get_by_test_id("queue-running").inner_text() == "1"
            assert await panel.get_by_test_id("queue-running-of").inner_text() == "1"
            assert "P2: 1" in await panel.get_by_test_id("queue-by-priority").inner_text()
            await panel.get_by_test_id("queue-health").filter(has_text="healthy").wait_for()
            for wo, place in places.items():
                await page.locator(f"tr[data-id='{wo}'] td[data-position='{place}']", has_text=f"#{place}").wait_for()
            await page.locator(f"tr[data-id='{holder}'][data-status=running] td[data-position='0']").wait_for()
            await shot(page, "10-queue-panel")

            # Filtered to the less urgent order alone: still #2, its place in the whole queue.
            await page.goto(f"{_base(http)}/?label=dash-queue-low")
            await page.locator(f"tr[data-id='{low}'] td[data-position='2']", has_text="#2").wait_for()
            assert await page.locator("tbody#orders tr").count() == 1

            # A bad capacity: the API's 422 at the field, nothing changed.
            capacity = page.get_by_label("New capacity")
            await capacity.fill("0")
            await page.get_by_role("button", name="Set").click()
            error = page.locator("#err-capacity")
            await error.filter(has_text="greater than or equal to 1").wait_for()
            assert await capacity.get_attribute("aria-invalid") == "true"
            assert (await http.get("/api/v1/queue/stats")).json()["capacity"] == 1
            await shot(page, "11-queue-capacity-422")

            # Capacity 2 from the form: the next order (the more urgent one) gets the second slot.
            await capacity.fill("2")
            await page.get_by_role("button", name="Set").click()
            await panel.get_by_test_id("queue-capacity").filter(has_text="2").wait_for()
            assert await error.is_hidden() and await capacity.get_attribute("aria-invalid") is None
            await agents.wait_started(high)
            await page.goto(f"{_base(http)}/?label=dash-queue")
            await page.locator(f"tr[data-id='{high}'][data-status=running] td[data-position='0']").wait_for()
            await page.locator(f"tr[data-id='{low}'] td[data-position='1']", has_text="#1").wait_for()
            await panel.get_by_test_id("queue-queued").filter(has_text="1").wait_for()
            assert await panel.get_by_test_id("queue-running").inner_text() == "2"
            assert (await http.get(f"/api/v1/work-orders/{low}/position")).json()["position"] == 1
            assert low not in agents.started()
            await shot(page, "12-queue-capacity-2")

        agents.release(holder, high, low)
        async with asyncio.timeout(60):
            for wo in (holder, high, low):
                while (await http.get(f"/api/v1/work-orders/{wo}")).json()["status"] not in ("succeeded", "failed"):
                    await asyncio.sleep(0.2)
    assert not [url for url in requests if url.endswith("/position")], "the page asked for positions one by one"
    assert_only_loopback(requests)
