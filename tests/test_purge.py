"""`POST /api/v1/work-orders/purge` and `agentgate purge`: real dev server, real worker, real HTTP, real files."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from temporalio.service import RPCError, RPCStatusCode

from agentgate import service
from agentgate.checkpoints import repository as checkpoint_repository
from agentgate.demo.sample_repo import create_sample_repo
from agentgate.ids import new_work_order_id
from tests.conftest import running_api, running_worker
from tests.test_workflow import make_order

REPO_ROOT = Path(__file__).resolve().parents[1]
PURGE = "/api/v1/work-orders/purge"


async def _until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not met within {timeout} s"
        await asyncio.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return False


def _field(response) -> str:
    return response.json()["error"]["details"][0]["field"]


async def _cli(base_url: str, *args: str) -> subprocess.CompletedProcess:
    """The CLI in a thread: the API it talks to is served by this very event loop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_")}
    env.update(PYTHONPATH=str(REPO_ROOT), AGENTGATE_API_URL=base_url)
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agentgate.cli", "purge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_purge_input_is_validated_and_names_the_field(dev_env, settings):
    async with running_api(dev_env, settings) as http:
        none = await http.post(PURGE, json={})
        assert none.status_code == 422 and _field(none) == "body"
        assert "at least one selector: ids, statuses or older_than_days" in none.json()["error"]["message"]
        only_flags = await http.post(PURGE, json={"dry_run": False, "force": True, "ids": []})
        assert only_flags.status_code == 422 and _field(only_flags) == "body"
        bad_status = await http.post(PURGE, json={"statuses": ["done"]})
        assert bad_status.status_code == 422 and _field(bad_status) == "body.statuses.0"
        assert "'succeeded'" in bad_status.json()["error"]["message"]
        bad_id = await http.post(PURGE, json={"ids": ["../../etc"]})
        assert bad_id.status_code == 422 and _field(bad_id) == "body.ids.0"
        negative = await http.post(PURGE, json={"older_than_days": -1})
        assert negative.status_code == 422 and _field(negative) == "body.older_than_days"
        unknown = await http.post(PURGE, json={"ids": [new_work_order_id()], "everything": True})
        assert unknown.status_code == 422 and _field(unknown) == "body.everything"
        # `purge` never reads as a work-order id on the other routes.
        assert (await http.get(PURGE)).status_code in (404, 405)
        assert (await http.post("/api/v1/work-orders/purge/kill")).status_code == 404


async def test_purge_dry_run_then_for_real_then_force(dev_env, settings, tmp_path):
    client = dev_env.client
    repo = create_sample_repo(tmp_path / "repo")
    pid_file = tmp_path / "agent.pid"
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        # A finished order with two runs, and an order whose agent is still running.
        done = make_order(repo, agent="true", gate="true")
        handle, _ = await service.start_work_order(client, settings, done)
        first = await handle.result()
        second = await (await service.rerun_work_order(client, settings, done.id)).result()
        assert first.result == second.result == "passed" and first.run_id != second.run_id
        trusted = {"provider": "none", "network": "full"}  # a host PID in a host file: no sandbox
        busy = make_order(repo, agent=f"echo $$ > {pid_file}; exec sleep 120", gate="true", sandbox=trusted)
        busy_handle, _ = await service.start_work_order(client, settings, busy)

        async def agent_running() -> bool:
            return pid_file.exists() and bool(pid_file.read_text().strip())

        await _until(agent_running, what="the busy order's agent started")
        agent_pid = int(pid_file.read_text())
        done_files = [
            settings.runs_dir / done.id,
            settings.workspaces_dir / done.id,
            checkpoint_repository(settings.runs_dir, done.id),
        ]
        busy_files = [settings.runs_dir / busy.id, settings.workspaces_dir / busy.id]
        assert all(p.is_dir() for p in done_files + busy_files)

        # 1. dry run is the default: a report, nothing deleted; the running order is refused without force.
        dry = await http.post(PURGE, json={"ids": [done.id, busy.id]})
        assert dry.status_code == 200, dry.text
        report = dry.json()
        assert report["dry_run"] is True and report["matched"] == 2
        items = {i["id"]: i for i in report["items"]}
        assert items[done.id]["action"] == "would_purge" and items[done.id]["status"] == "succeeded"
        assert sorted(items[done.id]["runs"]) == sorted([first.run_id, second.run_id])
        assert items[done.id]["artifacts"] == str(done_files[0]) and items[done.id]["workspaces"] == str(done_files[1])
        assert items[done.id]["checkpoints"] == str(done_files[2])
        assert items[busy.id]["action"] == "skipped" and "force" in items[busy.id]["reason"]
        assert all(p.is_dir() for p in done_files + busy_files)
        await handle.describe()

        recent = (await http.post(PURGE, json={"ids": [done.id], "older_than_days": 1})).json()
        assert recent["items"][0]["action"] == "skipped" and "after the cutoff" in recent["items"][0]["reason"]

        # The CLI (through the API): dry run by default, and one line for a missing selector.
        cli = await _cli(str(http.base_url), "--id", done.id, "--json")
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["items"][0]["action"] == "would_purge"
        no_selector = await _cli(str(http.base_url), "--yes")
        assert no_selector.returncode == 2 and "at least one selector" in no_selector.stderr
        bad_status = await _cli(str(http.base_url), "--status", "done")
        assert bad_status.returncode == 2 and "--status 'done'" in bad_status.stderr

        # 2. for real, selected by status (visibility), scoped to this deployment's task queue.
        async def listed_succeeded() -> bool:
            rows = await service.list_work_orders(client, status="succeeded", limit=500)
            return any(r["id"] == done.id for r in rows)

        await _until(listed_succeeded, what="the finished order listed as succeeded")
        real = await http.post(PURGE, json={"statuses": ["succeeded"], "dry_run": False})
        assert real.status_code == 200, real.text
        body = real.json()
        assert [i["id"] for i in body["items"]] == [done.id], body
        assert body["items"][0]["action"] == "purged" and body["items"][0]["executions_deleted"] == 2
        assert not any(p.exists() for p in done_files)
        assert all(p.is_dir() for p in busy_files)

        async def runs_gone() -> bool:
            for run_id in (first.run_id, second.run_id):
                try:
                    await client.get_workflow_handle(done.id, run_id=run_id).describe()
                    return False
                except RPCError as err:
                    if err.status != RPCStatusCode.NOT_FOUND:
                        raise
            return True

        await _until(runs_gone, timeout=60, what="both runs deleted from Temporal")
        assert (await http.get(f"/api/v1/work-orders/{done.id}")).status_code == 404
        again = (await http.post(PURGE, json={"ids": [done.id], "dry_run": False})).json()
        assert again["items"][0]["action"] == "not_found"

        # 3. a running order: refused without force; with force terminated, its agent stopped, its files gone.
        refused = (await http.post(PURGE, json={"ids": [busy.id], "dry_run": False})).json()
        assert refused["items"][0]["action"] == "skipped" and all(p.is_dir() for p in busy_files)
        forced = await http.post(PURGE, json={"ids": [busy.id], "dry_run": False, "force": True})
        item = forced.json()["items"][0]
        assert item["action"] == "purged" and item["terminated"] is True and item["executions_deleted"] == 1

        async def agent_gone() -> bool:
            return not _alive(agent_pid)

        await _until(agent_gone, timeout=30, what="the busy order's agent process stopped")

        async def files_gone() -> bool:  # the worker's last records of the canceled attempt are swept too
            return not any(p.exists() for p in busy_files)

        await _until(files_gone, timeout=30, what="the force-purged order's folders removed")
        try:
            await busy_handle.describe()
            still_there = True
        except RPCError:
            still_there = False
        if still_there:  # deletion is asynchronous in Temporal; it must at least be closed now
            assert (await busy_handle.describe()).status.name == "TERMINATED"
