"""Custom search attributes: how runs are listed and filtered in Temporal visibility.

Registered on the embedded dev server with `--search-attribute NAME=TYPE` and on a real
cluster with `temporal operator search-attribute create` (see docs/deploy.md).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

STATUS = SearchAttributeKey.for_keyword("AgentGateStatus")
STATE = SearchAttributeKey.for_keyword("AgentGateState")
RESULT = SearchAttributeKey.for_keyword("AgentGateResult")
PRIORITY = SearchAttributeKey.for_int("AgentGatePriority")
AGENT = SearchAttributeKey.for_keyword("AgentGateAgent")
REPO = SearchAttributeKey.for_keyword("AgentGateRepo")
LABELS = SearchAttributeKey.for_keyword_list("AgentGateLabels")

ALL = (STATUS, STATE, RESULT, PRIORITY, AGENT, REPO, LABELS)

_CLI_TYPES = {"KEYWORD": "Keyword", "INT": "Int", "KEYWORD_LIST": "KeywordList"}


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    flags = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={_CLI_TYPES[key.indexed_value_type.name]}"]
    return flags


async def ensure_registered(client, namespace: str) -> list[str]:
    """Add any of our search attributes the namespace lacks; returns the names added.

    Works on clusters that allow it through the operator service (dev server, test server,
    self-hosted); Temporal Cloud needs `tcld` or its UI instead (see docs/deploy.md).
    """
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as err:  # the time-skipping test server only implements "add"
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {k.name: k.indexed_value_type for k in ALL if k.name not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)
