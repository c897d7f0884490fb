"""The sandbox through the real workflow: the demo run passes inside bubblewrap, the record says so,
and an agent that writes outside its workspace cannot."""

from __future__ import annotations

import json

import pytest

from agentgate.artifacts import ArtifactStore
from agentgate.models import RunContext
from agentgate.sandbox.providers import BubblewrapProvider
from tests.test_workflow import make_order, run

ok, why = BubblewrapProvider().available()
pytestmark = pytest.mark.skipif(not ok, reason=f"bubblewrap cannot run here: {why}")


async def test_demo_run_passes_inside_bubblewrap(skip_env, settings, sample_repo):
    import uuid
    from pathlib import Path

    from tests.conftest import DEMO_AGENT

    outside = Path(f"/var/tmp/agentgate-escape-{uuid.uuid4().hex}.txt")  # not /tmp: that one is private inside
    agent = f"{DEMO_AGENT} && (echo escaped > {outside} || echo 'write outside refused')"
    order = make_order(sample_repo, agent=agent, sandbox={"provider": "bubblewrap", "network": "none"})
    outcome = await run(skip_env, settings, order)
    assert outcome.result == "passed" and outcome.iterations == 2, outcome.error
    store = ArtifactStore(settings.runs_dir)
    ctx = RunContext(work_order_id=order.id, run_id=outcome.run_id)
    record = json.loads(store.read_text(ctx, "agent-1.json"))
    assert record["sandbox"]["provider"] == "bubblewrap"
    assert record["sandbox"]["network"] == "none"
    assert "write outside refused" in store.read_text(ctx, "agent-1.stdout.log")
    assert not outside.exists()
