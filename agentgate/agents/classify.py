"""What went wrong with an agent run, and whether trying again can help: a table, not code paths.

Each row names the signals it recognises — an error kind the CLI reports (Claude's
assistant `error` / result `subtype`, OpenCode's error name), an HTTP status the CLI
passes on (`api_error_status`), a pattern in the CLI's own message or stderr, or an exit
code — and says which `ErrorType` that is and whether Temporal should retry it. The first
matching row wins, so rows that must not be shadowed (authentication before the generic
"4xx" texts, max-turns before anything) come first.

Retryable rows (rate limit, overload, server errors, dropped connections) are raised by
the build activity as retryable ApplicationErrors, so the activity's retry policy backs
off and tries again. Everything else becomes the iteration's `BuildError` with the CLI's
own message, because retrying a bad key, a bad flag or an exhausted turn budget only
burns time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agentgate.models import ErrorType


@dataclass(frozen=True)
class Rule:
    reason: str
    error_type: ErrorType
    retryable: bool
    kinds: frozenset[str] = field(default_factory=frozenset)
    statuses: frozenset[int] = field(default_factory=frozenset)
    pattern: str | None = None
    exit_codes: frozenset[int] = field(default_factory=frozenset)

    def matches(self, kind: str | None, status: int | None, text: str, exit_code: int | None) -> bool:
        if kind and kind in self.kinds:
            return True
        if status is not None and status in self.statuses:
            return True
        if exit_code is not None and exit_code in self.exit_codes:
            return True
        return bool(self.pattern and text and re.search(self.pattern, text, re.IGNORECASE))


def _r(reason: str, error_type: ErrorType, retryable: bool, *, kinds=(), statuses=(), pattern=None, exit_codes=()):
    return Rule(reason, error_type, retryable, frozenset(kinds), frozenset(statuses), pattern, frozenset(exit_codes))


RULES: list[Rule] = [
    _r(
        "max_turns",
        ErrorType.AGENT_TASK_FAILURE,
        False,
        kinds={"error_max_turns", "max_turns"},
        pattern=r"reached (the )?max(imum)? (number of )?turns",
    ),
    _r(
        "authentication",
        ErrorType.AGENT_AUTH,
        False,
        kinds={"authentication_failed", "ProviderAuthError", "AuthError"},
        statuses={401, 403},
        pattern=r"not logged in|invalid api key|invalid x-api-key|authentication|unauthori[sz]ed|please run /login"
        r"|api key (is )?(missing|not set|required)|missing (bearer|api key)|codex login|oauth token",
    ),
    _r(
        "billing",
        ErrorType.AGENT_AUTH,
        False,
        kinds={"billing_error"},
        statuses={402},
        pattern=r"credit balance|billing|quota exceeded|insufficient_quota",
    ),
    _r(
        "model_not_found",
        ErrorType.AGENT_CRASH,
        False,
        kinds={"ProviderModelNotFoundError", "model_not_found"},
        pattern=r"ProviderModelNotFoundError|model not found",
    ),
    _r(
        "rate_limit",
        ErrorType.AGENT_CRASH,
        True,
        kinds={"rate_limit", "rate_limit_error"},
        statuses={429},
        pattern=r"rate.?limit|too many requests|\b429\b",
    ),
    _r(
        "overloaded",
        ErrorType.AGENT_CRASH,
        True,
        kinds={"overloaded", "overloaded_error"},
        statuses={529},
        pattern=r"overloaded|\b529\b",
    ),
    _r(
        "server_error",
        ErrorType.AGENT_CRASH,
        True,
        kinds={"server_error", "api_error"},
        statuses={500, 502, 503, 504},
        pattern=r"internal server error|bad gateway|service unavailable|gateway time-?out|\b50[0234] ",
    ),
    _r(
        "connection",
        ErrorType.AGENT_CRASH,
        True,
        pattern=r"ECONNRESET|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|connection (reset|refused|error|closed)|socket hang up"
        r"|stream disconnected|network error|fetch failed|error sending request|timed out waiting"
        r"|waiting for network|cannot connect to api",
    ),
    _r(
        "invalid_request",
        ErrorType.AGENT_CRASH,
        False,
        kinds={"invalid_request", "invalid_request_error"},
        statuses={400, 404, 413, 422},
    ),
    _r(
        "invalid_arguments",
        ErrorType.AGENT_CRASH,
        False,
        pattern=r"unknown option|unexpected argument|invalid value .* for|argument '.*' is invalid"
        r"|error: option|required argument|unrecognized (option|argument)|missing required",
    ),
    _r(
        "cli_not_found",
        ErrorType.AGENT_CRASH,
        False,
        exit_codes={126, 127},
    ),
]


@dataclass(frozen=True)
class Classification:
    reason: str
    error_type: ErrorType
    retryable: bool


def classify(
    *,
    kind: str | None = None,
    status: int | None = None,
    message: str | None = None,
    stderr: str | None = None,
    exit_code: int | None = None,
) -> Classification | None:
    """The first rule that recognises the failure; `None` when no rule does (the caller's default applies).

    Only call this for a run that failed: the text patterns are meant for error messages,
    and a healthy transcript may well mention "429" or "authentication".
    """
    text = "\n".join(t for t in (message, stderr) if t)
    for rule in RULES:
        if rule.matches(kind, status, text, exit_code):
            return Classification(rule.reason, rule.error_type, rule.retryable)
    return None
