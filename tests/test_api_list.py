"""Listing from Temporal visibility over real HTTP: created_after/before filters and cursor pagination."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

from temporalio.service import RPCError

from agentgate import service
from agentgate.client import AgentGateClient
from agentgate.models import WorkOrderRequest
from tests.conftest import DEMO_AGENT, running_api


async def _listed(http, **params) -> dict:
    response = await http.get("/api/v1/work-orders", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def _all_pages(http, **params) -> tuple[list[str], int]:
    ids, cursor, pages = [], None, 0
    while True:
        page = await _listed(http, **params, **({"cursor": cursor} if cursor else {}))
        pages += 1
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids, pages
        assert pages < 20


def _error(response, field: str) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["details"][0]["field"] == field, error
    return error["message"]


async def test_time_filters_and_cursor_pages(dev_env, settings):
    """Five orders wait in Temporal (no worker polls this queue); pages of two walk them newest first.

    They are started the way the submit route starts them (service.start_work_order), without the
    queue's position update, which would wait for a worker.
    """
    label = f"list-{uuid.uuid4().hex[:10]}"
    request = WorkOrderRequest(
        task_prompt="wait", workspace_source={"type": "fresh"}, agent={"command": DEMO_AGENT}, labels=[label]
    )
    ids: list[str] = []
    async with running_api(dev_env, settings) as http:
        try:
            for i in range(5):
                if i == 3:
                    middle = datetime.now(UTC)
                    await asyncio.sleep(0.05)
                order = service.make_work_order(request)
                _, created = await service.start_work_order(dev_env.client, settings, order)
                assert created
                ids.append(order.id)
            newest_first = ids[::-1]
            for _ in range(100):  # visibility is eventually consistent
                if len((await _listed(http, label=label))["items"]) == 5:
                    break
                await asyncio.sleep(0.1)

            everything = await _listed(http, label=label)
            assert [i["id"] for i in everything["items"]] == newest_first and everything["next_cursor"] is None

            walked, pages = await _all_pages(http, label=label, limit=2)
            assert walked == newest_first and pages in (3, 4)  # a last, empty page is allowed

            def walk_with_the_typed_client() -> list[str]:
                seen, cursor = [], None
                with AgentGateClient(str(http.base_url)) as client:
                    while True:
                        page = client.list_page(cursor, limit=3, label=label)
                        seen += [item["id"] for item in page["items"]]
                        if not (cursor := page["next_cursor"]):
                            return seen

            assert await asyncio.to_thread(walk_with_the_typed_client) == newest_first

            after = await _listed(http, label=label, created_after=middle.isoformat())
            assert [i["id"] for i in after["items"]] == newest_first[:2]
            before = await _listed(http, label=label, created_before=middle.isoformat().replace("+00:00", "Z"))
            assert [i["id"] for i in before["items"]] == newest_first[2:]
            naive_utc = middle.replace(tzinfo=None).isoformat()  # no offset: taken as UTC
            assert [i["id"] for i in (await _listed(http, label=label, created_after=naive_utc))["items"]] == (
                newest_first[:2]
            )
            walked, _ = await _all_pages(http, label=label, created_before=middle.isoformat(), limit=1)
            assert walked == newest_first[2:]
            wide = await _listed(http, label=label, created_after="2000-01-01", created_before="9999-12-31T23:59:59Z")
            assert len(wide["items"]) == 5

            # Bad values are 422s that name the parameter, never 500s.
            first = await _listed(http, label=label, limit=2)
            cursor = first["next_cursor"]
            assert cursor
            url = "/api/v1/work-orders"
            _error(await http.get(url, params={"created_after": "yesterday"}), "query.created_after")
            _error(await http.get(url, params={"created_before": "2024-13-01"}), "query.created_before")
            message = _error(
                await http.get(url, params={"created_after": "2024-02-01", "created_before": "2024-01-01"}),
                "query.created_before",
            )
            assert "later than created_after" in message
            _error(await http.get(url, params={"created_after": "0001-01-01T00:00:00+14:00"}), "query.created_after")
            for bad in ("garbage", "a.b", "....", "!!!.???", "ключ.ключ", cursor[:-2] + "AA", "A" + cursor):
                message = _error(
                    await http.get(url, params={"label": label, "limit": 2, "cursor": bad}), "query.cursor"
                )
                assert "next_cursor" in message
            # A cursor belongs to its filters: with others it would page through the wrong list.
            _error(await http.get(url, params={"label": label, "status": "queued", "cursor": cursor}), "query.cursor")
            assert (await http.get(url, params={"label": label, "limit": 2, "cursor": cursor})).status_code == 200
        finally:
            for wo_id in ids:  # those that already ended (a clone that failed) need nothing
                with contextlib.suppress(RPCError):
                    await dev_env.client.get_workflow_handle(wo_id).terminate(reason="test cleanup")
