"""Start-up storage validation: corrupt JSON records are quarantined with a reason; reading keeps working."""

from __future__ import annotations

import asyncio
import fcntl
import json
import threading
from pathlib import Path

from agentgate.artifacts import QUARANTINE_DIR
from agentgate.storage_check import LOCK_FILE, json_problem, validate_store
from tests.conftest import running_api, running_worker
from tests.test_workflow import make_order

RUN = "wo_0123456789abcdefghjk/11111111-2222-3333-4444-555555555555"


def _store(root: Path) -> Path:
    run = root / RUN
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "succeeded"}))
    (run / "work-order.json").write_text('{"task_prompt": "x", ')  # cut short
    (run / "iteration-1.json").write_text("")  # a write that never completed
    (run / "agent-1.json").write_bytes(b"\xff\xfe{}")  # not UTF-8
    (run / "events.jsonl").write_text('{"seq": 1}\n{"seq": 2, "torn')  # append-only: never judged here
    (run / ".run.json.abc.tmp").write_text("{")  # an atomic write in flight: never judged
    (run / "gate-1-1.log").write_text("{ not json, and not meant to be")
    return run


def test_json_problem_names_the_position():
    assert json_problem(b'{"a": 1}') is None
    assert json_problem(b"[]") is None
    problem = json_problem(b'{\n  "a": 1,\n  "b": }')
    assert problem is not None and "line 3, column 8" in problem
    assert "empty" in (json_problem(b"  \n") or "")
    assert "UTF-8" in (json_problem(b"\xff") or "")


def test_corrupt_records_are_quarantined_with_a_reason(tmp_path):
    root = tmp_path / "runs"
    run = _store(root)
    report = validate_store(root, fix=True)

    assert sorted(c.path.rsplit("/", 1)[1] for c in report.corrupt) == [
        "agent-1.json",
        "iteration-1.json",
        "work-order.json",
    ]
    assert report.scanned == 4 and not report.errors
    # Good and non-JSON files stay where they are; the corrupt ones moved out of the run folder.
    assert sorted(p.name for p in run.iterdir()) == [".run.json.abc.tmp", "events.jsonl", "gate-1-1.log", "run.json"]
    moved = root / QUARANTINE_DIR / RUN
    names = sorted(p.name for p in moved.iterdir())
    assert len(names) == 6 and sum(n.endswith(".reason") for n in names) == 3
    [reason_file] = [p for p in moved.iterdir() if p.name.startswith("work-order.json") and p.name.endswith(".reason")]
    reason = reason_file.read_text()
    assert "not valid JSON" in reason and "line 1, column 22" in reason
    assert "found by the storage check at 20" in reason and f"original location: {RUN}/work-order.json" in reason
    # The quarantined bytes are kept exactly.
    [kept] = [p for p in moved.iterdir() if p.name.startswith("work-order.json.") and not p.name.endswith(".reason")]
    assert kept.read_text() == '{"task_prompt": "x", '

    again = validate_store(root, fix=True)  # the quarantine folder itself is never re-checked
    assert not again.corrupt and again.in_quarantine == 3


def test_report_only_moves_nothing(tmp_path):
    root = tmp_path / "runs"
    run = _store(root)
    report = validate_store(root, fix=False)
    assert len(report.unresolved) == 3
    assert (run / "work-order.json").exists() and not (root / QUARANTINE_DIR).exists()


def test_unchanged_good_files_are_not_read_again(tmp_path):
    root, state = tmp_path / "runs", tmp_path / "home"
    run = root / RUN
    run.mkdir(parents=True)
    for i in range(5):
        (run / f"iteration-{i}.json").write_text(json.dumps({"i": i}))
    first = validate_store(root, state_dir=state)
    assert (first.scanned, first.parsed) == (5, 5)
    second = validate_store(root, state_dir=state)
    assert (second.scanned, second.parsed) == (5, 0)
    (run / "iteration-2.json").write_text('{"i": 2, oops}')  # changed: read again, and caught
    third = validate_store(root, state_dir=state)
    assert third.parsed == 1 and [c.path for c in third.corrupt] == [f"{RUN}/iteration-2.json"]
    # A full check (doctor) reads everything regardless of the list.
    assert validate_store(root, state_dir=state, use_cache=False).parsed == 4


def test_large_files_are_skipped_with_a_note(tmp_path):
    root = tmp_path / "runs"
    (root / RUN).mkdir(parents=True)
    (root / RUN / "big.json").write_text("[" + "1," * 2000 + "1]")
    report = validate_store(root, max_bytes=1000)
    assert report.too_large == [f"{RUN}/big.json"] and not report.corrupt


def test_a_second_concurrent_check_steps_aside_and_stop_interrupts(tmp_path):
    root, state = tmp_path / "runs", tmp_path / "home"
    _store(root)
    state.mkdir()
    with open(state / LOCK_FILE, "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        skipped = validate_store(root, state_dir=state)
    assert skipped.skipped and skipped.scanned == 0
    stop = threading.Event()
    stop.set()
    stopped = validate_store(root, state_dir=state, stop=stop)
    assert stopped.interrupted and stopped.scanned == 0


def test_a_missing_store_is_fine(tmp_path):
    report = validate_store(tmp_path / "nothing-here")
    assert report.scanned == 0 and not report.corrupt


async def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_api_startup_quarantines_and_reading_keeps_working(dev_env, settings, tmp_path):
    """A finished run's records are corrupted; the API's start-up check moves them; list and read still answer."""
    from agentgate.demo.sample_repo import create_sample_repo

    repo = create_sample_repo(tmp_path / "repo")
    order = make_order(repo, agent="true", gate="true")
    from agentgate import service

    async with running_worker(dev_env, settings):
        handle, _ = await service.start_work_order(dev_env.client, settings, order)
        outcome = await handle.result()
        assert outcome.result == "passed", outcome.error
        run = settings.runs_dir / order.id / outcome.run_id
        (run / "run.json").write_text('{"status": "succeeded", ')
        (run / "iteration-1.json").write_text("\x00\x00\x00")
        quarantine = settings.runs_dir / QUARANTINE_DIR / order.id / outcome.run_id

        async with running_api(dev_env, settings) as http:
            await _wait_for(lambda: quarantine.is_dir() and len(list(quarantine.glob("*.reason"))) == 2)
            reasons = "".join(p.read_text() for p in quarantine.glob("*.reason"))
            assert "the api start-up storage check" in reasons and "line 1, column 25" in reasons

            got = await http.get(f"/api/v1/work-orders/{order.id}")
            assert got.status_code == 200 and got.json()["result"] == "passed"
            listed = await http.get("/api/v1/work-orders", params={"limit": 500})
            assert listed.status_code == 200
            files = await http.get(f"/api/v1/work-orders/{order.id}/artifacts")
            assert files.status_code == 200
            names = {i["name"] for i in files.json()["items"]}
            assert "work-order.json" in names and "run.json" not in names and "iteration-1.json" not in names
            gone = await http.get(f"/api/v1/work-orders/{order.id}/artifacts/run.json")
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
            kept = await http.get(f"/api/v1/work-orders/{order.id}/artifacts/work-order.json")
            assert kept.status_code == 200 and kept.json()["id"] == order.id
