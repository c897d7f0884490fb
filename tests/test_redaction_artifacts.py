"""Secrets never reach disk: every artifact write goes through the run's redactor.

The end-to-end test runs a real work order whose agent prints a declared secret (with a quote
and a backslash, so its JSON-escaped form matters too) and a GitHub-token-shaped string to stdout
and stderr, writes them into the workspace (patch, gate output, feedback), and ends its output
with them; then no file anywhere under the run's folder, no SSE event and no API answer holds them.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import uuid
from pathlib import Path

import pytest

from agentgate.artifacts import ArtifactStore, open_artifact_stream
from agentgate.events import RunEventLog
from agentgate.models import RunContext
from agentgate.sandbox.redact import REDACTED
from tests.conftest import running_api, running_worker

CTX = RunContext(work_order_id="wo_redact000001", run_id="run-1")
GH_TOKEN = "ghp_" + "Q7" * 18  # the shape of a GitHub token; never printed by this test file itself


def _forms(secret: str) -> list[bytes]:
    """The secret as raw bytes and as it would look inside a JSON string."""
    return list({secret.encode(), json.dumps(secret)[1:-1].encode(), json.dumps(secret, ensure_ascii=False)[1:-1]
                 .encode()})  # fmt: skip


def _leaks(root: Path, needles: list[bytes]) -> list[str]:
    """Every file under `root` (hidden ones included) holding any needle."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and any(n in path.read_bytes() for n in needles):
            found.append(str(path.relative_to(root)))
    return found


# -- the store, unit by unit ------------------------------------------------------------------------


def test_every_write_path_of_the_store_redacts(tmp_path, monkeypatch):
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("AGENTGATE_TEST_SERVICE_TOKEN", secret)  # named like a secret: redacted undeclared
    store = ArtifactStore(tmp_path)
    store.write_text(CTX, "notes.md", f"token {secret} and {GH_TOKEN}\n")
    store.write_json(CTX, "record.json", {"out": f"{secret}", "nested": [GH_TOKEN]})
    store.append_jsonl(CTX, "lines.jsonl", {"text": secret})
    described = store.store_output(CTX, "big.log", f"head\n{secret}\n", excerpt_bytes=100)
    assert secret not in described.excerpt and REDACTED in described.excerpt
    with store.open_stream(CTX, "stream.log") as stream:
        data = f"one\nthe value {secret} and {GH_TOKEN} here\nno newline at the end {secret}".encode()
        for i in range(0, len(data), 5):  # secrets split across writes
            stream.write(data[i : i + 5])
    RunEventLog(store, CTX, iteration=1).emit("agent_output", text=f"printed {secret}", stream="stdout")

    root = store.run_dir(CTX)
    assert _leaks(root, [secret.encode(), GH_TOKEN.encode()]) == []
    for name in ("notes.md", "record.json", "lines.jsonl", "big.log", "stream.log", "events.jsonl"):
        assert REDACTED in (root / name).read_text(), name
    assert (root / "stream.log").read_text().endswith(f"no newline at the end {REDACTED}")
    assert json.loads((root / "record.json").read_text())["nested"] == [REDACTED]


def test_declared_secrets_json_escaping_binary_data_and_verbatim_input(tmp_path, monkeypatch):
    secret = f'pa"ss\\word-{uuid.uuid4().hex[:8]}'
    monkeypatch.setenv("AGENTGATE_TEST_DEPLOY_PHRASE", secret)  # not named like a secret
    store = ArtifactStore(tmp_path)
    store.write_text(CTX, "before.log", f"{secret}\n")
    assert secret in store.read_text(CTX, "before.log"), "undeclared and not secret-looking: kept"

    # Declared by the run's work order (sandbox.secrets): from now on redacted, raw and JSON-escaped.
    order = {"id": CTX.work_order_id, "task_prompt": "say hi", "sandbox": {"secrets": ["AGENTGATE_TEST_DEPLOY_PHRASE"]}}
    store.write_json(CTX, "work-order.json", order)
    store.write_json(CTX, "agent-1.json", {"stdout_excerpt": f"got {secret}"})
    store.write_text(CTX, "after.log", f"got {secret}\n")
    assert _leaks(store.run_dir(CTX), _forms(secret)) == ["before.log"]

    # The input the run works from stays verbatim; binary data (a git bundle) is not touched.
    store.write_text(CTX, "prompt-1.md", f"use {GH_TOKEN}\n")
    assert GH_TOKEN in store.read_text(CTX, "prompt-1.md")
    blob = b"PACK\x00\x01" + GH_TOKEN.encode() + secret.encode()
    store.write_bytes(CTX, "delivery/run.bundle", blob)
    assert store.read_bytes(CTX, "delivery/run.bundle") == blob


def test_streams_outside_a_run_folder_still_use_the_worker_redactor(tmp_path):
    path = tmp_path / "loose" / "out.log"
    with open_artifact_stream(path) as fh:
        fh.write(f"-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY-----\n{GH_TOKEN}\n".encode())
    text = path.read_text()
    assert "MIIEow" not in text and GH_TOKEN not in text and text.count(REDACTED) == 2


def test_events_are_redacted_before_any_subscriber_sees_them(tmp_path):
    from agentgate.observability import emitter as em
    from agentgate.observability.events import make_event

    store = ArtifactStore(tmp_path)
    got = []
    remove = em.add_subscriber(got.append)
    try:
        log = RunEventLog(store, CTX, iteration=1)
        log.emit(
            "agent_tool_call", tool={"name": "Bash", "input": {"command": f"gh auth login --with-token {GH_TOKEN}"}}
        )
        log.emit("agent_output", text="nothing to hide")
    finally:
        remove()
    assert [e.seq for e in got] == [1, 2]
    assert GH_TOKEN not in got[0].to_json() and got[0].tool["input"]["command"].endswith(REDACTED)
    assert got[1].text == "nothing to hide"
    assert GH_TOKEN not in store.read_text(CTX, "events.jsonl")

    # A redactor that breaks must not let the raw event through: its fields are withheld, the run goes on.
    def broken(event):
        raise RuntimeError("redactor bug")

    seen = []
    emitter = em.EventEmitter([em.JsonlSubscriber(store), seen.append], redact=broken)
    emitter.emit(make_event("agent_output", work_order_id=CTX.work_order_id, run_id=CTX.run_id, text=GH_TOKEN))
    assert seen[0].seq == 3 and seen[0].model_extra == {"redaction_failed": True}
    assert GH_TOKEN not in store.read_text(CTX, "events.jsonl")


# -- a real run ---------------------------------------------------------------------------------------

LEAKY_AGENT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    from pathlib import Path
    secret = os.environ["AGENTGATE_TEST_DEPLOY_PHRASE"]
    token = "ghp_" + "Q7" * 18
    n = os.environ["AGENTGATE_ITERATION"]
    print("digest", hashlib.sha256(secret.encode()).hexdigest(), flush=True)
    print("deploying with", secret, "and", token, flush=True)
    print(json.dumps({"secret": secret, "token": token}), flush=True)
    print("stderr too:", secret, token, file=sys.stderr, flush=True)
    Path(f"leak-{n}.txt").write_text(f"{secret}\\n")  # a token in a file would trip the gate plan's secret scan
    if n == "2":
        Path("done.txt").write_text("ok\\n")
    print("final words", secret, token, flush=True)
    """
)


@pytest.mark.timeout(180)
async def test_a_leaky_agent_leaves_no_secret_in_any_artifact_or_stream(
    dev_env, settings, sample_repo, tmp_path, monkeypatch
):
    secret = f'pa"ss\\word-{uuid.uuid4().hex}'
    monkeypatch.setenv("AGENTGATE_TEST_DEPLOY_PHRASE", secret)
    agent = tmp_path / "leaky_agent.py"
    agent.write_text(LEAKY_AGENT)
    body = {
        "task_prompt": "Leak everything you can.",
        "workspace_source": {"type": "local", "path": str(sample_repo)},
        "agent": {"driver": "command", "command": f"python3 {agent}"},
        # The gate prints what the agent wrote and a token of its own, failing until iteration 2:
        # gate log, verification record, feedback and events all see them.
        "gates": ["cat leak-*.txt; python3 -c \"print('ghp_' + 'Q7' * 18)\"; test -f done.txt"],
        "max_iterations": 2,
        "sandbox": {"provider": "none", "network": "full", "secrets": ["AGENTGATE_TEST_DEPLOY_PHRASE"]},
    }
    needles = [*_forms(secret), GH_TOKEN.encode()]
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        created = await http.post("/api/v1/work-orders", json=body)
        assert created.status_code == 201, created.text
        wo_id = created.json()["id"]
        sse = await http.get(f"/api/v1/work-orders/{wo_id}/events", timeout=120)  # follows until the run ends
        outcome = (await http.get(f"/api/v1/work-orders/{wo_id}")).text

    assert '"type":"run_completed"' in sse.text, sse.text[-2000:]
    final = json.loads(outcome)
    assert final["status"] == "succeeded" and final["iterations"] == 2, outcome[:2000]
    root = ArtifactStore(settings.runs_dir).run_dir(RunContext(work_order_id=wo_id, run_id=final["run_id"]))

    # The agent really had and printed the secret (its digest is in the log) ...
    stdout = (root / "agent-1.stdout.log").read_text()
    assert hashlib.sha256(secret.encode()).hexdigest() in stdout
    # ... and none of it reached a file, the SSE stream or the API's answer (from Temporal's history).
    assert _leaks(root, needles) == []
    assert not any(n.decode() in sse.text for n in needles)
    assert not any(n.decode() in outcome for n in needles)
    for name in ("agent-1.stdout.log", "agent-1.stderr.log", "agent-1.json", "patch-1.diff", "gate-1-1.log",
                 "feedback-1.md", "events.jsonl", "verification-1.json"):  # fmt: skip
        assert REDACTED in (root / name).read_text(), name
    assert REDACTED in sse.text
