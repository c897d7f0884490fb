"""Start-up storage validation: corrupt JSON records are quarantined with a reason; reading keeps working."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import threading
import time
from pathlib import Path

import pytest

from agentgate.artifacts import QUARANTINE_DIR, ArtifactStore
from agentgate.observability.emitter import emitter_for
from agentgate.observability.events import make_event
from agentgate.observability.tail import read_events
from agentgate.storage_check import LOCK_FILE, json_problem, scan_events, validate_store
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
    (run / "events.jsonl").write_text(_event(1) + _event(2))  # good: left alone
    (run / ".run.json.abc.tmp").write_text("{")  # an atomic write in flight: never judged
    (run / "gate-1-1.log").write_text("{ not json, and not meant to be")
    return run


def _event(seq: int, type_: str = "phase_started") -> str:
    wo, run = RUN.split("/")
    return json.dumps({"seq": seq, "type": type_, "work_order_id": wo, "run_id": run}) + "\n"


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
    assert report.scanned == 5 and not report.errors  # four records and the (good) event log
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


# -- events.jsonl ----------------------------------------------------------------------------------------


def _damaged_events(root: Path) -> tuple[Path, bytes]:
    """Six events; line 3 overwritten with garbage, line 5 not an event, and a torn seventh line at the end."""
    run = root / RUN
    run.mkdir(parents=True)
    lines = [_event(n) for n in range(1, 7)]
    lines[2] = "\x00\x00garbage from another writer\n"
    lines[4] = '["a list, not an event"]\n'
    data = ("".join(lines) + '{"seq": 7, "type": "agent_out').encode()
    path = run / "events.jsonl"
    path.write_bytes(data)
    return path, data


def test_a_corrupt_event_log_is_copied_to_quarantine_and_keeps_its_good_lines(tmp_path):
    root = tmp_path / "runs"
    path, original = _damaged_events(root)
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    report = validate_store(root, fix=True)

    [item] = report.corrupt
    assert item.path == f"{RUN}/events.jsonl" and item.quarantined_to is not None
    assert "3 of 7 lines cannot be decoded" in item.reason
    # The quarantine holds the file exactly as found, and a reason naming every bad line and why.
    copy = Path(item.quarantined_to)
    assert copy.read_bytes() == original and copy.parent == root / QUARANTINE_DIR / RUN
    reason = Path(f"{copy}.reason").read_text()
    assert "line 3 (byte " in reason and "not UTF-8" not in reason and "not valid JSON" in reason
    assert "line 5 (byte " in reason and "not an event" in reason
    assert "line 7 (byte " in reason and "Unterminated string" in reason
    assert f"original location: {RUN}/events.jsonl" in reason
    # The live file: the good lines in order with their seq unchanged, then one line that keeps seq 7 used
    # (the torn line carried it, and a reader may have seen it before the damage).
    events = read_events(path)
    assert [e.seq for e in events] == [1, 2, 4, 6, 7]
    assert events[-1].type == "events_quarantined" and events[-1].model_dump()["dropped_lines"] == [3, 5, 7]
    assert path.stat().st_mtime_ns == 2_000_000_000  # the newest-run-on-disk order is unchanged
    # The next event appended by the real writer continues after it.
    store = ArtifactStore(root)
    wo, run = RUN.split("/")
    emitted = emitter_for(store).emit(make_event("phase_started", work_order_id=wo, run_id=run, phase="build"))
    assert emitted.seq == 8 and [e.seq for e in read_events(path)] == [1, 2, 4, 6, 7, 8]
    # Repaired once: a second check finds a clean log.
    again = validate_store(root, fix=True)
    assert not again.corrupt and again.in_quarantine == 1


def test_report_only_leaves_the_event_log_alone_and_the_doctor_names_it(tmp_path):
    from agentgate.doctor import _storage_findings

    root = tmp_path / "runs"
    path, original = _damaged_events(root)
    report = validate_store(root, fix=False)
    assert [c.path for c in report.unresolved] == [f"{RUN}/events.jsonl"]
    assert path.read_bytes() == original and not (root / QUARANTINE_DIR).exists()
    [finding] = _storage_findings(report)
    assert (finding.kind, finding.path, finding.fixed) == ("corrupt_events", str(path), False)
    [fixed] = _storage_findings(validate_store(root, fix=True, found_by="agentgate doctor"))
    assert fixed.kind == "corrupt_events" and fixed.fixed and "copied to" in fixed.detail


def test_a_clean_log_with_a_gap_in_the_middle_needs_no_marker(tmp_path):
    """Only the middle line is bad: the good lines around it already carry higher numbers."""
    root = tmp_path / "runs"
    run = root / RUN
    run.mkdir(parents=True)
    (run / "events.jsonl").write_text(_event(1) + '{"seq": 2, "type": \n' + _event(3, "run_completed"))
    validate_store(root, fix=True)
    assert [(e.seq, e.type) for e in read_events(run / "events.jsonl")] == [(1, "phase_started"), (3, "run_completed")]


def _blocked_on_flock(inode: int) -> bool:
    """True when some process waits for a lock on this inode (a `->` line in /proc/locks)."""
    return any(line.split()[1] == "->" and line.split()[6].endswith(f":{inode}") for line in _proc_locks())


def _proc_locks() -> list[str]:
    return [line for line in Path("/proc/locks").read_text().splitlines() if len(line.split()) >= 8]


def test_an_append_waiting_for_the_lock_lands_in_the_repaired_file(tmp_path):
    """The real writer opened the old file and waits for its lock while the repair rewrites it: nothing is lost."""
    if not Path("/proc/locks").exists():
        pytest.skip("no /proc/locks here")
    root = tmp_path / "runs"
    path, _ = _damaged_events(root)
    old_inode = path.stat().st_ino
    store = ArtifactStore(root)
    wo, run = RUN.split("/")
    results = []
    with open(path, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as the repair holds it
        writer = threading.Thread(
            target=lambda: results.append(
                emitter_for(store).emit(make_event("phase_started", work_order_id=wo, run_id=run, phase="verify"))
            )
        )
        writer.start()
        deadline = time.monotonic() + 30
        while not _blocked_on_flock(old_inode):
            assert time.monotonic() < deadline, "the writer never waited for the lock"
            time.sleep(0.01)
        # While the writer waits on the old inode, the repair's locked part runs (it takes its own lock).
        scan = scan_events(path.read_bytes())
        tmp = path.with_name(".events.jsonl.repair")
        tmp.write_bytes(b"".join(line + b"\n" for line in scan.good))
        os.replace(tmp, path)
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    writer.join(30)
    [event] = results
    assert event.seq == 7  # after the last good line (6); the torn 7 is gone from this file
    assert [e.seq for e in read_events(path)] == [1, 2, 4, 6, 7]


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
