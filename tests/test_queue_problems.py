"""The ten queue problems of seed 01, each mapped to a test in docs/queue-robustness.md.

This file holds the tests the other files did not already have (6: an order whose run folder is gone;
9: queued orders start by themselves, also across a restart of worker and API), and the check that
keeps the table honest: every test it names exists, is collected, and is not skipped.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

from tests.conftest import running_api, running_worker
from tests.test_queue import Agents, body, final, position, queue_settings, stats, submit, until

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "docs" / "queue-robustness.md"


def _table_rows() -> list[tuple[int, str]]:
    rows = []
    for line in TABLE.read_text().splitlines():
        m = re.match(r"^\| (\d+) \|.*`(tests/[\w/]+\.py::\w+)` \|$", line)
        if m:
            rows.append((int(m.group(1)), m.group(2)))
    return rows


def _test_functions(path: Path) -> dict[str, list[str]]:
    """Top-level test functions of a file and the names of their decorators (to spot skips)."""
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
            found[node.name] = [ast.unparse(d) for d in node.decorator_list]
    return found


def test_every_one_of_the_ten_problems_names_an_existing_unskipped_test():
    rows = _table_rows()
    assert sorted({n for n, _ in rows}) == list(range(1, 11)), "each of the ten problems needs a row with a test"
    for number, node in rows:
        file, name = node.split("::")
        functions = _test_functions(ROOT / file)
        assert name in functions, f"problem {number}: {node} does not exist"
        skips = [d for d in functions[name] if "skip" in d or "chaos" in d]
        assert not skips, f"problem {number}: {node} is skipped or outside the default run: {skips}"


# -- 6: a work order whose run folder is gone -----------------------------------------------------


async def test_an_order_whose_artifacts_are_gone_still_reads_lists_and_reruns(dev_env, tmp_path, sample_repo):
    settings = queue_settings(tmp_path, capacity=2)
    agents = Agents(tmp_path)
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        wo_id = (await submit(http, body(sample_repo, agents, labels=["orphaned"])))["id"]
        await agents.wait_started(1)
        agents.release(wo_id)
        first = await final(http, wo_id)
        assert first["status"] == "succeeded" and first["warnings"] == []
        folder = Path(first["links"]["artifacts"])
        assert (folder / "run.json").is_file()

        shutil.rmtree(folder)  # lost disk, a manual rm, another host's volume: the run it names is gone

        read = await http.get(f"/api/v1/work-orders/{wo_id}")
        assert read.status_code == 200, read.text
        data = read.json()
        assert data["status"] == "succeeded" and data["iterations"] == 1 and len(data["history"]) == 1
        assert len(data["warnings"]) == 1 and "is gone" in data["warnings"][0] and "doctor" in data["warnings"][0]

        listed = await http.get("/api/v1/work-orders", params={"label": "orphaned"})
        assert listed.status_code == 200 and [i["id"] for i in listed.json()["items"]] == [wo_id]

        replay = await http.get(f"/api/v1/work-orders/{wo_id}/events", params={"follow": "false"})
        assert replay.status_code == 200 and replay.text.strip() == ""
        files = await http.get(f"/api/v1/work-orders/{wo_id}/artifacts")
        assert files.status_code == 200 and files.json()["items"] == []
        missing = await http.get(f"/api/v1/work-orders/{wo_id}/artifacts/run.json")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

        # A re-run gets a fresh folder and completes; the old run stays listed in the order's runs.
        rerun = await http.post(f"/api/v1/work-orders/{wo_id}/runs")
        assert rerun.status_code == 201, rerun.text
        await until(lambda: len(agents.started()) == 2, "the re-run's agent started")
        agents.go.joinpath(wo_id).unlink(missing_ok=True)
        agents.release(wo_id)
        again = await final(http, wo_id)
        assert again["run_id"] != first["run_id"] and again["warnings"] == []
        runs = (await http.get(f"/api/v1/work-orders/{wo_id}/runs")).json()
        assert {r["run_id"] for r in runs["items"]} >= {first["run_id"], again["run_id"]}


# -- 9: no manual trigger, not even after a restart ------------------------------------------------


async def test_queued_orders_start_by_themselves_when_a_slot_frees(dev_env, tmp_path, sample_repo):
    """Capacity 1: the second order waits, then starts with nobody asking — across a restart of both the
    worker and the API, since the queue is workflow state in Temporal, not memory of either process."""
    settings = queue_settings(tmp_path, capacity=1)
    agents = Agents(tmp_path)
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        first = (await submit(http, body(sample_repo, agents)))["id"]
        await agents.wait_started(1)
        second = await submit(http, body(sample_repo, agents))
        assert second["status"] == "queued" and second["position"] == 1
        assert (await position(http, second["id"]))["position"] == 1

    # Worker and API are gone; a new pair starts. Nothing re-submits or triggers anything.
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        assert (await stats(http))["queued"] == 1
        agents.release(first)
        # The first order's build was interrupted by the worker's shutdown and is retried by the new worker
        # (its agent starts again, and finds itself released); only then does the second one get the slot.
        await until(lambda: second["id"] in agents.started(), "the queued order started by itself")
        started = agents.started()
        assert started[-1] == second["id"] and set(started[:-1]) == {first}, started
        agents.release(second["id"])
        assert (await final(http, first))["status"] == "succeeded"
        assert (await final(http, second["id"]))["status"] == "succeeded"
