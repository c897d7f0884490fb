"""Error types an activity raises, and which of them Temporal must not retry."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from agentgate.models import ErrorType

# Listed in every retry policy: retrying these cannot succeed.
NON_RETRYABLE = [
    ErrorType.WORKSPACE_ERROR.value,
    ErrorType.AGENT_AUTH.value,
    "invalid_input",
    "unknown_driver",
]


def app_error(kind: ErrorType | str, message: str, *, retryable: bool = False, **details: object) -> ApplicationError:
    kind_value = kind.value if isinstance(kind, ErrorType) else kind
    return ApplicationError(message, details or None, type=kind_value, non_retryable=not retryable)
