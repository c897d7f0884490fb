"""Work-order validation: bad input names the field and says how to fix it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentgate.models import GateSpec, WorkOrderRequest


def _body(**overrides):
    body = {
        "task_prompt": "fix it",
        "workspace_source": {"type": "local", "path": "/repo"},
        "agent": {"driver": "command", "command": "true"},
    }
    body.update(overrides)
    return body


def _error_fields(exc: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in exc.errors()]


def test_defaults():
    order = WorkOrderRequest.model_validate(_body())
    assert order.max_iterations == 3 and order.max_wall_clock_seconds == 3600 and order.priority == 3
    assert order.gates == []


@pytest.mark.parametrize(
    ("override", "field", "text"),
    [
        ({"task_prompt": "   "}, "task_prompt", "must not be empty"),
        ({"agent": {"driver": "gpt-9"}}, "agent.driver", "unknown agent 'gpt-9'"),
        ({"agent": {"driver": "command"}}, "agent", "needs `command`"),
        ({"max_iterations": 0}, "max_iterations", "greater than or equal to 1"),
        ({"priority": 9}, "priority", "less than or equal to 5"),
        ({"workspace_source": {"type": "svn", "url": "x"}}, "workspace_source", "unknown workspace_source type 'svn'"),
        ({"workspace_source": {"type": "github", "owner": "a b", "repo": "r"}}, "workspace_source.github.owner", ""),
        ({"labels": ["bad label!"]}, "labels", "must be 1-64"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
    ],
)
def test_bad_input_names_the_field(override, field, text):
    with pytest.raises(ValidationError) as info:
        WorkOrderRequest.model_validate(_body(**override))
    fields = _error_fields(info.value)
    assert any(f == field or f.startswith(field) for f in fields), fields
    assert text in str(info.value)


def test_gate_accepts_a_plain_command_string():
    gate = GateSpec.model_validate("pytest -q")
    assert gate.command == "pytest -q" and gate.display_name == "pytest -q" and gate.timeout_seconds == 600


def test_all_workspace_source_forms():
    for src in (
        {"type": "local", "path": "/r"},
        {"type": "git", "url": "https://example.invalid/r.git", "branch": "dev"},
        {"type": "github", "owner": "o", "repo": "r"},
        {"type": "fresh"},
    ):
        assert WorkOrderRequest.model_validate(_body(workspace_source=src)).workspace_source.type == src["type"]
