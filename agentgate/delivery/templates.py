"""PR title and body from `str.format`-style templates with a closed set of placeholders.

Templates come from work orders, so only plain `{name}` placeholders are allowed:
attribute or index access (`{x.__class__}`) would let a caller read interpreter
internals, and an unknown name should fail at submission, not at delivery time.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # models imports this module for validation; no runtime cycle
    from agentgate.delivery.models import PRTemplateContext

PLACEHOLDERS = (
    "work_order_id",
    "run_id",
    "task_title",
    "task_summary",
    "iterations",
    "highest_level_passed",
    "gate_table",
    "cost",
    "branch",
)
TITLE_MAX = 256  # GitHub rejects longer titles with 422
BODY_MAX = 60_000  # GitHub's limit is 65,536 characters


def check_template(template: str, field: str) -> None:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{field}: {exc} (write literal braces as {{{{ and }}}})") from exc
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            raise ValueError(f"{field}: unknown placeholder {{{name}}}; allowed: {', '.join(PLACEHOLDERS)}")
        if spec or conversion:
            raise ValueError(f"{field}: placeholder {{{name}}} must not have a format spec or conversion")


def _values(ctx: PRTemplateContext) -> dict[str, str]:
    prompt = ctx.task_prompt.strip()
    first = prompt.splitlines()[0].strip() if prompt else f"work order {ctx.work_order_id}"
    title = first if len(first) <= 72 else first[:71].rstrip() + "…"
    summary = prompt if len(prompt) <= 2000 else prompt[:2000].rstrip() + "\n\n…[truncated]"
    if ctx.gates:
        rows = ["| Gate | Result | Duration |", "|---|---|---|"]
        for gate in ctx.gates:
            name = gate.name.replace("|", "\\|").replace("\n", " ")
            duration = f"{gate.duration_ms / 1000:.1f} s" if gate.duration_ms is not None else "–"
            rows.append(f"| `{name}` | {'✅ passed' if gate.passed else '❌ failed'} | {duration} |")
        table = "\n".join(rows)
    else:
        table = "_No gates configured._"
    if ctx.highest_level_passed:
        level = ctx.highest_level_passed
    elif ctx.gates:
        level = f"{sum(g.passed for g in ctx.gates)}/{len(ctx.gates)} gates"
    else:
        level = "–"
    return {
        "work_order_id": ctx.work_order_id,
        "run_id": ctx.run_id,
        "task_title": title,
        "task_summary": summary,
        "iterations": str(ctx.iterations),
        "highest_level_passed": level,
        "gate_table": table,
        "cost": f"${ctx.cost_usd:.2f}" if ctx.cost_usd is not None else "–",
        "branch": ctx.branch or "",
    }


def render_title(template: str, ctx: PRTemplateContext) -> str:
    title = " ".join(template.format(**_values(ctx)).split())
    return title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1] + "…"


def render_body(template: str, ctx: PRTemplateContext) -> str:
    body = template.format(**_values(ctx))
    return body if len(body) <= BODY_MAX else body[:BODY_MAX] + "\n\n…[truncated]"
