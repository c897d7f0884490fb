"""Process-wide logging set-up for the CLI entry points."""

from __future__ import annotations

import logging
import os


def configure_basic_logging() -> None:
    level = os.environ.get("AGENTGATE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
