"""Process-wide logging set-up for the CLI entry points (JSON lines unless on a terminal)."""

from __future__ import annotations

import os

from agentgate.observability.logging import configure_logging


def configure_basic_logging() -> None:
    configure_logging(os.environ.get("AGENTGATE_LOG_LEVEL", "INFO"))
