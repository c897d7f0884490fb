"""A worker killed while it clones the workspace: the prepare heartbeat moves the clone to another worker.

Before the `workspace-heartbeat` patch, prepare had only its 30-minute start-to-close timeout, so such a
run sat in `preparing` for half an hour. The clone here is a real `git clone` over an "ssh" transport whose
ssh command is a local program: its first connection stalls (the clone hangs, as on a dead network), later
ones run `git-upload-pack` directly, so the retried clone on the second worker succeeds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from datetime import UTC, datetime

from agentgate import service
from agentgate.demo.sample_repo import create_sample_repo
from agentgate.ids import new_work_order_id
from agentgate.models import WorkOrder
from tests.test_worker_loss import _settings, _until
from tests.workers import WorkerProcess

STALLING_SSH = textwrap.dedent(
    """
    import os, pathlib, subprocess, sys, time
    state = pathlib.Path(sys.argv[1])
    if "-G" in sys.argv:  # git asking which ssh variant this is: answer like OpenSSH, not a connection
        sys.exit(0)
    n = len(list(state.glob("connection-*"))) + 1
    (state / f"connection-{n}").write_text(str(os.getpid()))
    if n == 1:
        time.sleep(600)  # a clone that hangs: only the heartbeat timeout can tell its worker died
        sys.exit(1)
    sys.exit(subprocess.call(["sh", "-c", sys.argv[-1]]))  # ssh would run this on the host: git-upload-pack '<path>'
    """
)


async def test_kill_9_during_prepare_the_clone_is_retried_on_another_worker(dev_env, tmp_path):
    settings = _settings(dev_env, tmp_path)
    repo = create_sample_repo(tmp_path / "repo")
    state = tmp_path / "ssh"
    state.mkdir()
    script = tmp_path / "stalling_ssh.py"
    script.write_text(STALLING_SSH)
    ssh = {"GIT_SSH_COMMAND": f"{sys.executable} {script} {state}"}

    order = WorkOrder(
        id=new_work_order_id(),
        created_at=datetime.now(UTC),
        task_prompt="Write done.txt.",
        workspace_source={"type": "git", "url": f"ssh://git@localhost{repo}"},
        agent={"driver": "command", "command": "echo done > done.txt"},
        gates=["test -f done.txt"],
        max_iterations=1,
        max_wall_clock_seconds=600,
    )
    workers = [WorkerProcess(settings, tmp_path / "worker-1.log", **ssh)]
    try:
        handle, _ = await service.start_work_order(dev_env.client, settings, order)
        await _until(lambda: (state / "connection-1").exists(), 90, "the first clone connected (and hangs)")
        stalled = int((state / "connection-1").read_text())

        workers[0].kill9()
        os.kill(stalled, signal.SIGKILL)  # our own stalled "ssh", by PID: it would otherwise outlive the test
        workers.append(WorkerProcess(settings, tmp_path / "worker-2.log", **ssh))

        outcome = await asyncio.wait_for(handle.result(), timeout=180)
        assert outcome.result == "passed", (outcome.error, (tmp_path / "worker-2.log").read_text()[-3000:])
        assert len(list(state.glob("connection-*"))) == 2  # the clone ran once more, on the second worker
        workspace = settings.workspaces_dir / order.id / outcome.run_id
        assert (workspace / "done.txt").read_text().strip() == "done"
        assert (workspace / "mathlib.py").exists()  # the sample repository's content: the clone is complete
    finally:
        for worker in workers:
            worker.stop()
