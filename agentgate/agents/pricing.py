"""List prices, so a run's cost is known even when the CLI does not report it.

Claude Code reports `total_cost_usd` itself and that figure wins; Codex and OpenCode
(for some providers) report only tokens, so the cost is computed here. Prices are USD
per million tokens by model family, matched by the first pattern that fits the model
name. They are list prices and drift: a wrong figure here shows up as a wrong estimate,
never as a failed run, and an unknown model yields `None` rather than a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agentgate.models import TokenUsage


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_write: float
    cache_read: float


# Ordered: the first matching pattern wins, so specific families precede general ones.
PRICES: list[tuple[str, Price]] = [
    (r"claude-(opus-4-[5-9]|opus-[5-9])", Price(input=5.0, output=25.0, cache_write=6.25, cache_read=0.50)),
    (r"claude-(3-)?opus", Price(input=15.0, output=75.0, cache_write=18.75, cache_read=1.50)),
    (r"claude-.*sonnet|^sonnet$", Price(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30)),
    (r"claude-(haiku-4|haiku-[5-9])|^haiku$", Price(input=1.0, output=5.0, cache_write=1.25, cache_read=0.10)),
    (r"claude-3-5-haiku|claude-3-haiku", Price(input=0.80, output=4.0, cache_write=1.0, cache_read=0.08)),
    (r"^opus$", Price(input=5.0, output=25.0, cache_write=6.25, cache_read=0.50)),
    (r"gpt-5(\.\d+)?(-codex)?-mini", Price(input=0.25, output=2.0, cache_write=0.25, cache_read=0.025)),
    (r"gpt-5(\.\d+)?-nano", Price(input=0.05, output=0.40, cache_write=0.05, cache_read=0.005)),
    (r"gpt-5", Price(input=1.25, output=10.0, cache_write=1.25, cache_read=0.125)),
    (r"codex-mini", Price(input=1.50, output=6.0, cache_write=1.50, cache_read=0.375)),
    (r"gpt-4\.1-mini", Price(input=0.40, output=1.60, cache_write=0.40, cache_read=0.10)),
    (r"gpt-4\.1", Price(input=2.0, output=8.0, cache_write=2.0, cache_read=0.50)),
    (r"o4-mini", Price(input=1.10, output=4.40, cache_write=1.10, cache_read=0.275)),
    (r"\bo3\b", Price(input=2.0, output=8.0, cache_write=2.0, cache_read=0.50)),
    (r"gemini-2\.5-pro", Price(input=1.25, output=10.0, cache_write=1.25, cache_read=0.31)),
    (r"gemini-2\.5-flash", Price(input=0.30, output=2.50, cache_write=0.30, cache_read=0.075)),
]


def price_for(model: str | None) -> Price | None:
    if not model:
        return None
    name = model.lower().split("/")[-1]  # "anthropic/claude-sonnet-4-5" → the model part
    for pattern, price in PRICES:
        if re.search(pattern, name):
            return price
    return None


def estimate_cost(model: str | None, tokens: TokenUsage) -> float | None:
    """USD for `tokens` at `model`'s list price; `None` when the model is unknown."""
    price = price_for(model)
    if price is None:
        return None
    total = (
        tokens.input * price.input
        + tokens.output * price.output
        + tokens.cache_creation * price.cache_write
        + tokens.cache_read * price.cache_read
    ) / 1_000_000
    return round(total, 6)
