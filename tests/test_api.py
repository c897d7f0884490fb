"""The HTTP API over real Temporal (dev server), real uvicorn, real HTTP."""

from __future__ import annotations

import asyncio

from agentgate.demo.sample_repo import GATE_COMMAND, TASK_PROMPT
from tests.conftest import DEMO_AGENT, running_api, running_worker

# The agent writes its host PID to a host file: a plain subprocess (trusted local use), not the default sandbox.
HOST_PIDS = {"provider": "none", "network": "full"}


def _body(repo, **overrides):
    body = {
        "task_prompt": TASK_PROMPT,
        "workspace_source": {"type": "local", "path": str(repo)},
        "agent": {"driver": "command", "command": DEMO_AGENT},
        "gates": [GATE_COMMAND],
        "labels": ["api-test"],
    }
    body.update(overrides)
    return body


async def _wait_terminal(http, wo_id: str, timeout: float = 60) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        data = (await http.get(f"/api/v1/work-orders/{wo_id}")).json()
        if data["status"] in ("succeeded", "failed", "canceled"):
            return data
        assert asyncio.get_running_loop().time() < deadline, data
        await asyncio.sleep(0.2)


async def test_submit_then_read_until_passed(dev_env, settings, sample_repo):
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        created = await http.post("/api/v1/work-orders", json=_body(sample_repo))
        assert created.status_code == 201, created.text
        wo_id = created.json()["id"]
        assert wo_id.startswith("wo_") and created.json()["status"] == "queued"
        assert created.headers["location"] == f"/api/v1/work-orders/{wo_id}"

        final = await _wait_terminal(http, wo_id)
        assert final["result"] == "passed" and final["iterations"] == 2
        assert final["delivery"]["branch"] == f"agentgate/{wo_id}"
        assert final["links"]["temporal_ui"].endswith(f"/workflows/{wo_id}/{final['run_id']}/history")
        assert [rec["verification"]["passed"] for rec in final["history"]] == [False, True]

        # Listed from Temporal visibility with the search attributes the workflow kept up to date.
        for _ in range(50):
            items = (await http.get("/api/v1/work-orders", params={"status": "succeeded"})).json()["items"]
            mine = [i for i in items if i["id"] == wo_id]
            if mine:
                break
            await asyncio.sleep(0.1)
        assert mine and mine[0]["result"] == "passed" and mine[0]["labels"] == ["api-test"]

        # Canceling a finished order is a conflict, not a silent success.
        conflict = await http.delete(f"/api/v1/work-orders/{wo_id}")
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"


async def test_cancel_running_order_stops_the_agent(dev_env, settings, sample_repo, tmp_path):
    pid_file = tmp_path / "agent.pid"
    agent = f"echo $$ > {pid_file}; sleep 300"
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        body = _body(sample_repo, agent={"driver": "command", "command": agent}, sandbox=HOST_PIDS)
        wo_id = (await http.post("/api/v1/work-orders", json=body)).json()["id"]
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            await asyncio.sleep(0.05)
        pid = int(pid_file.read_text())
        response = await http.delete(f"/api/v1/work-orders/{wo_id}")
        assert response.status_code == 202
        final = await _wait_terminal(http, wo_id)
        assert final["status"] == "canceled"
        assert final["result"] == "canceled"
        import os

        assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]


async def test_validation_errors_name_the_field(dev_env, settings, sample_repo, tmp_path):
    not_repo = tmp_path / "plain"
    not_repo.mkdir()
    async with running_api(dev_env, settings) as http:
        cases = [
            (_body(sample_repo, task_prompt=""), "body.task_prompt"),
            (_body(sample_repo, agent={"driver": "nope"}), "body.agent.driver"),
            (_body(sample_repo, workspace_source={"type": "local", "path": str(tmp_path / "missing")}),
             "body.workspace_source.path"),
            (_body(sample_repo, workspace_source={"type": "local", "path": str(not_repo)}),
             "body.workspace_source.path"),
            (_body(sample_repo, max_iterations="many"), "body.max_iterations"),
        ]  # fmt: skip
        for body, field in cases:
            response = await http.post("/api/v1/work-orders", json=body)
            assert response.status_code == 422, (field, response.text)
            error = response.json()["error"]
            assert error["code"] == "validation_error"
            assert any(d["field"] == field for d in error["details"]), (field, error)
            assert error["message"].startswith(field)
            assert response.json()["request_id"]
        missing = await http.get("/api/v1/work-orders/wo_0000000000nothere")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert (await http.get("/health/live")).json() == {"status": "ok"}
        ready = await http.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["temporal"]["ok"] is True


def _alive(pid: int) -> bool:
    import os

    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
    finally:
        os.sched_yield()


async def test_idempotency_key_returns_the_same_order(dev_env, settings, sample_repo):
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        headers = {"Idempotency-Key": f"key-{settings.task_queue}"}
        first = await http.post("/api/v1/work-orders", json=_body(sample_repo), headers=headers)
        second = await http.post("/api/v1/work-orders", json=_body(sample_repo), headers=headers)
        assert first.status_code == 201 and second.status_code == 200
        assert first.json()["id"] == second.json()["id"] and second.json()["created"] is False
        await _wait_terminal(http, first.json()["id"])
        runs = (await http.get(f"/api/v1/work-orders/{first.json()['id']}/runs")).json()["items"]
        assert len(runs) == 1


async def test_kill_terminates_and_leaves_no_process(dev_env, settings, sample_repo, tmp_path):
    pid_file = tmp_path / "agent.pid"
    agent = f"sleep 1000 & echo $! > {pid_file}; wait"
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        body = _body(sample_repo, agent={"driver": "command", "command": agent}, sandbox=HOST_PIDS)
        wo_id = (await http.post("/api/v1/work-orders", json=body)).json()["id"]
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            await asyncio.sleep(0.05)
        grandchild = int(pid_file.read_text())
        assert _alive(grandchild)
        killed = await http.post(f"/api/v1/work-orders/{wo_id}/kill", json={"reason": "runaway agent"})
        assert killed.status_code == 202 and killed.json()["reason"] == "runaway agent"
        final = (await http.get(f"/api/v1/work-orders/{wo_id}")).json()
        assert final["status"] == "failed" and final["result"] == "failed_error"
        for _ in range(200):  # the activity learns of the termination at its next heartbeat
            if not _alive(grandchild):
                break
            await asyncio.sleep(0.05)
        assert not _alive(grandchild)
        again = await http.post(f"/api/v1/work-orders/{wo_id}/kill", json={"reason": "twice"})
        assert again.status_code == 409


async def test_rerun_starts_a_new_run_of_the_same_order(dev_env, settings, sample_repo):
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        wo_id = (await http.post("/api/v1/work-orders", json=_body(sample_repo))).json()["id"]
        first = await _wait_terminal(http, wo_id)
        rerun = await http.post(f"/api/v1/work-orders/{wo_id}/runs")
        assert rerun.status_code == 201, rerun.text
        assert rerun.json()["run_id"] != first["run_id"]
        second = await _wait_terminal(http, wo_id)
        assert second["run_id"] == rerun.json()["run_id"] and second["result"] == "passed"
        for _ in range(50):
            runs = (await http.get(f"/api/v1/work-orders/{wo_id}/runs")).json()["items"]
            if len(runs) == 2:
                break
            await asyncio.sleep(0.1)
        assert [r["run_id"] for r in runs] == [first["run_id"], second["run_id"]]
