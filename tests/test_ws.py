"""The WebSocket streams over real HTTP: a real worker, the real API under uvicorn, the `websockets` client."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agentgate.artifacts import ArtifactStore
from agentgate.demo.sample_repo import GATE_COMMAND, TASK_PROMPT
from agentgate.models import RunContext
from tests.conftest import DEMO_AGENT, running_api, running_worker

# Prints a few lines slowly before doing the demo agent's real work, so a client can drop mid-run.
SLOW_AGENT = f"for i in 1 2 3 4 5; do echo step $i; sleep 0.2; done; {DEMO_AGENT}"


def _ws_url(http, path: str) -> str:
    return str(http.base_url).replace("http://", "ws://").rstrip("/") + path


async def _submit(http, repo, agent: str = SLOW_AGENT) -> str:
    body = {"task_prompt": TASK_PROMPT, "workspace_source": {"type": "local", "path": str(repo)},
            "agent": {"driver": "command", "command": agent}, "gates": [GATE_COMMAND]}  # fmt: skip
    created = await http.post("/api/v1/work-orders", json=body)
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def _frames(ws, limit: int | None = None) -> list[dict]:
    """Frames until the server closes (or `limit` event frames arrived)."""
    frames: list[dict] = []
    try:
        while limit is None or sum(f["kind"] == "event" for f in frames) < limit:
            frames.append(json.loads(await ws.recv()))
    except ConnectionClosed:
        pass
    return frames


def _records(settings, wo_id: str, run_id: str) -> list[dict]:
    text = ArtifactStore(settings.runs_dir).read_text(RunContext(work_order_id=wo_id, run_id=run_id), "events.jsonl")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_one_run_live_then_resumed_mid_run_then_filtered(dev_env, settings, sample_repo):
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        wo_id = await _submit(http, sample_repo)
        url = _ws_url(http, f"/api/v1/work-orders/{wo_id}/ws")

        # Live from the start; the client drops the connection after a few events, mid-run.
        async with connect(url) as ws:
            first = await _frames(ws, limit=4)
        assert first[0]["kind"] == "subscribed" and first[0]["work_order_id"] == wo_id and first[0]["after"] == 0
        run_id = first[0]["run_id"]
        seen = [f["seq"] for f in first if f["kind"] == "event"]
        assert seen == [1, 2, 3, 4]
        assert all(f["event"]["run_id"] == run_id for f in first[1:])

        # Resume from the last seq seen: the rest of the run, then `end` and a normal close.
        async with connect(f"{url}?after={seen[-1]}") as ws:
            rest = await _frames(ws)
            assert ws.close_code == 1000
        events = [f for f in rest if f["kind"] == "event"]
        assert events[0]["seq"] == 5, "nothing lost, nothing repeated"
        seqs = seen + [f["seq"] for f in events]
        assert seqs == list(range(1, len(seqs) + 1))
        assert events[-1]["event"]["type"] == "run_completed"
        end = rest[-1]
        assert end == {"kind": "end", "work_order_id": wo_id, "run_id": run_id, "last_seq": seqs[-1],
                       "reason": "run_ended", "status": "succeeded"}  # fmt: skip
        # The frames carry exactly the durable log's records.
        assert [f["event"] for f in first[1:] + events] == _records(settings, wo_id, run_id)

        # A finished run replays and closes; a filter drops frames but keeps the numbering.
        async with connect(f"{url}?filter=output") as ws:
            output = await _frames(ws)
            assert ws.close_code == 1000
        kinds = {f["event"]["type"] for f in output if f["kind"] == "event"}
        assert kinds == {"agent_output"}
        steps = [f["event"]["text"] for f in output if f["kind"] == "event" and f["event"]["text"].startswith("step")]
        assert steps[:5] == [f"step {i}" for i in range(1, 6)]
        assert output[-1]["kind"] == "end" and output[-1]["last_seq"] == seqs[-1]


@pytest.mark.parametrize(
    ("path", "code", "error", "field"),
    [
        ("/api/v1/work-orders/wo_0000000000nothere/ws", 4404, "not_found", None),
        ("/api/v1/work-orders/{id}/ws?after=minus-one", 4422, "validation_error", "query.after"),
        ("/api/v1/work-orders/{id}/ws?filter=everything", 4422, "validation_error", "query.filter"),
    ],
)
async def test_bad_requests_get_an_error_frame_and_a_close_code(
    dev_env, settings, sample_repo, path, code, error, field
):
    async with running_api(dev_env, settings) as http:
        async with connect(_ws_url(http, path.replace("{id}", "wo_0000000000nothere"))) as ws:
            frames = await _frames(ws)
            assert ws.close_code == code
    assert len(frames) == 1 and frames[0]["kind"] == "error", frames
    assert frames[0]["error"]["code"] == error
    if field:
        assert frames[0]["error"]["details"][0]["field"] == field
        assert field in frames[0]["error"]["message"]


async def test_multiplexed_subscriptions_on_one_connection(dev_env, settings, sample_repo, tmp_path):
    from agentgate.demo.sample_repo import create_sample_repo

    other_repo = create_sample_repo(tmp_path / "other")
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        first, second = await _submit(http, sample_repo), await _submit(http, other_repo, agent=DEMO_AGENT)
        async with connect(_ws_url(http, "/ws")) as ws:

            async def ask(message) -> dict:
                await ws.send(message if isinstance(message, str) else json.dumps(message))
                return json.loads(await ws.recv())

            assert (await ask({"op": "ping"})) == {"kind": "pong"}
            bad = await ask("not json")
            assert bad["kind"] == "error" and bad["error"]["code"] == "validation_error"
            unknown = await ask({"op": "subscribe", "work_order_id": "wo_0000000000nothere"})
            assert unknown["kind"] == "error" and unknown["error"]["code"] == "not_found"
            assert unknown["work_order_id"] == "wo_0000000000nothere"
            wrong = await ask({"op": "subscribe", "work_order_id": first, "filters": ["nope"]})
            assert wrong["error"]["details"][0]["field"] == "message.filters"
            not_subscribed = await ask({"op": "unsubscribe", "work_order_id": second})
            assert not_subscribed["error"]["code"] == "not_subscribed"

            # Subscribe to both; the second one only for progress events. The connection stays open
            # after each run's `end`, until the client closes it.
            await ws.send(json.dumps({"op": "subscribe", "work_order_id": first}))
            await ws.send(json.dumps({"op": "subscribe", "work_order_id": second, "filters": ["progress"]}))
            frames: list[dict] = []
            ended: set[str] = set()
            while ended != {first, second}:
                frame = json.loads(await ws.recv())
                frames.append(frame)
                if frame["kind"] == "end":
                    ended.add(frame["work_order_id"])
            assert (await ask({"op": "ping"})) == {"kind": "pong"}

        for wo_id in (first, second):
            mine = [f for f in frames if f.get("work_order_id") == wo_id]
            assert mine[0]["kind"] == "subscribed" and mine[-1]["kind"] == "end"
            assert mine[-1]["status"] == "succeeded"
            events = [f for f in mine if f["kind"] == "event"]
            assert all(f["event"]["work_order_id"] == wo_id for f in events)
            seqs = [f["seq"] for f in events]
            assert seqs == sorted(set(seqs))
        first_events = [f["seq"] for f in frames if f.get("work_order_id") == first and f["kind"] == "event"]
        assert first_events == list(range(1, len(first_events) + 1)), "unfiltered: every seq, in order"
        second_types = {f["event"]["type"] for f in frames if f.get("work_order_id") == second and f["kind"] == "event"}
        assert "run_completed" in second_types and not second_types & {"agent_output", "agent_message"}
