"""schemathesis against the live OpenAPI schema: no input makes any documented route answer 5xx.

The API runs in real uvicorn on a free port, over a Temporal dev server of its own (fuzzing
purges executions and changes the queue's capacity, which must not reach the session's shared
server) with a real worker. schemathesis is synchronous, so it runs in a thread while this
event loop serves the API and the worker.

Each operation gets positive cases (valid by the schema: must be answered, 2xx or a 4xx
envelope, never 5xx, and conform to the documented responses) and negative cases (invalid by
the schema: a 4xx envelope, never 5xx); operations on a work order also run against a real,
finished one so the deep paths (artifacts, events, rerun, kill) see real state.

Positive submissions would start real runs of random commands: their agent, gates, sandbox and
delivery are replaced by a harmless `true` before sending, and a rewind of the real order keeps
its own agent (validation of those fields is what the negative cases and tests/test_api.py cover).

AGENTGATE_FUZZ_EXAMPLES (default 8) sets the examples per operation and mode,
AGENTGATE_FUZZ_SEED (default 4) the Hypothesis seed: fixed, so CI sees the same cases every run;
change it locally to explore.
"""

from __future__ import annotations

import asyncio
import os
import re
import traceback
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hsettings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from agentgate import search_attributes as sa
from agentgate.demo.sample_repo import GATE_COMMAND, TASK_PROMPT
from tests.conftest import DEMO_AGENT, _binary, running_api, running_worker

EXAMPLES = int(os.environ.get("AGENTGATE_FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("AGENTGATE_FUZZ_SEED", "4"))
POSITIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
NEGATIVE_CHECKS = [not_a_server_error, content_type_conformance]
HARMLESS = {"agent": {"driver": "command", "command": "true"}, "gates": [], "sandbox": None}


@pytest_asyncio.fixture(scope="module")
async def fuzz_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
    )
    yield env
    await env.shutdown()


def _defuse(case: Any) -> None:
    """A positive submission runs for real: make what it runs harmless, keep what the API validates."""
    if case.method.upper() == "POST" and case.path == "/api/v1/work-orders" and isinstance(case.body, dict):
        case.body.update(HARMLESS)
        case.body.pop("delivery", None)
        case.body.pop("protected_paths", None)
    if case.method.upper() == "POST" and case.path.endswith("/rewind") and isinstance(case.body, dict):
        case.body.pop("agent", None)  # a rewind of the real order would run a generated agent command


def _check_envelope(response: Any) -> None:
    if response.status_code < 400:
        return
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "request_id"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str), body
    headers = {k.lower(): v for k, v in response.headers.items()}
    rid = headers.get("x-request-id")
    assert (rid[0] if isinstance(rid, list) else rid) == body["request_id"], (headers, body)


def _run_operation(
    operation: Any, base_url: str, mode: Any, fixed_path: dict | None, failures: list[str], seen: Counter
) -> None:
    query = {"follow": "false"} if operation.path.endswith("/events") else None  # replay, never wait for a run
    checks = POSITIVE_CHECKS if mode == schemathesis.GenerationMode.POSITIVE else NEGATIVE_CHECKS
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed_path, query=query)

    @seed(SEED)
    @hsettings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        if mode == schemathesis.GenerationMode.POSITIVE:
            _defuse(case)
        response = case.call(base_url=base_url, timeout=60)
        seen[(operation.label, response.status_code)] += 1
        case.validate_response(response, checks=checks)
        _check_envelope(response)

    label = f"{operation.label} [{mode.value}{' real id' if fixed_path else ''}]"
    try:
        check()
    except Unsatisfiable:
        pass  # nothing in this operation's schema can be made invalid (negative mode): no cases to run
    except (Exception, BaseExceptionGroup) as exc:  # collect every failure (schemathesis raises groups), fail once
        detail = str(exc) if isinstance(exc, BaseExceptionGroup) else "".join(traceback.format_exception(exc))[-2000:]
        failures.append(f"{label}: {type(exc).__name__}: {detail}")


def _fuzz(base_url: str, real_id: str) -> tuple[list[str], list[str], Counter]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels, failures, seen = [], [], Counter()
    for operation in operations:
        labels.append(operation.label)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            _run_operation(operation, base_url, mode, None, failures, seen)
        if re.search(r"\{work_order_id\}", operation.path):
            _run_operation(
                operation, base_url, schemathesis.GenerationMode.POSITIVE, {"work_order_id": real_id}, failures, seen
            )
    return labels, failures, seen


async def test_no_input_makes_the_api_fail(fuzz_env, settings, sample_repo):
    async with running_worker(fuzz_env, settings), running_api(fuzz_env, settings) as http:
        body = {
            "task_prompt": TASK_PROMPT,
            "workspace_source": str(sample_repo),
            "agent": {"command": DEMO_AGENT},
            "gates": [GATE_COMMAND],
        }
        created = await http.post("/api/v1/work-orders", json=body)
        assert created.status_code == 201, created.text
        real_id = created.json()["id"]
        for _ in range(600):
            if (await http.get(f"/api/v1/work-orders/{real_id}")).json()["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.1)

        labels, failures, seen = await asyncio.to_thread(_fuzz, str(http.base_url).rstrip("/"), real_id)
    print("requests by operation and status:", *sorted(f"{k[0]} -> {k[1]}: {n}" for k, n in seen.items()), sep="\n  ")

    # The run covered the routes every engineer added, not a list written down here.
    for expected in (
        "POST /api/v1/work-orders",
        "GET /api/v1/work-orders",
        "DELETE /api/v1/work-orders/{work_order_id}",
    ):
        assert expected in labels, labels
    assert not failures, f"{len(failures)} operation(s) failed:\n\n" + "\n\n".join(failures)


async def test_404_405_422_share_the_envelope(dev_env, settings):
    async with running_api(dev_env, settings) as http:
        cases = [
            (await http.get("/api/v1/no-such-thing"), 404, "not_found"),
            (await http.get("/api/v1/work-orders/wo_0000000000nothere"), 404, "not_found"),
            (await http.patch("/api/v1/work-orders"), 405, "method_not_allowed"),
            (await http.get("/api/v1/work-orders", params={"limit": "many"}), 422, "validation_error"),
            (await http.post("/api/v1/work-orders", content=b"{oops", headers={"content-type": "application/json"}),
             422, "validation_error"),
        ]  # fmt: skip
        for response, status, code in cases:
            assert response.status_code == status, response.text
            _check_envelope(response)
            assert response.json()["error"]["code"] == code
        assert cases[2][0].headers.get("allow")  # the 405 keeps its Allow header
        # The schema documents that envelope for every error, so generated clients parse it.
        schema = (await http.get("/openapi.json")).json()
        for status in ("422", "4XX", "5XX"):
            ref = schema["paths"]["/api/v1/work-orders"]["post"]["responses"][status]["content"]["application/json"]
            assert ref["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
        assert "HTTPValidationError" not in schema["components"]["schemas"]


async def test_submit_with_no_worker_polling_is_accepted_not_a_500(dev_env, settings):
    """The API may start before any worker: the order is accepted, its position is just not known yet."""
    body = {"task_prompt": "wait", "workspace_source": {"type": "fresh"}, "agent": {"command": "true"}}
    async with running_api(dev_env, settings) as http:
        created = await http.post("/api/v1/work-orders", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["position"] is None and created.json()["status"] == "queued"
        await dev_env.client.get_workflow_handle(created.json()["id"]).terminate(reason="test cleanup")
