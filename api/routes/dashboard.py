"""The dashboard: plain HTML, CSS and JavaScript served by the API itself.

No build step and no CDN, so it works offline and on an air-gapped host exactly as in
tests. Pages are static shells; the browser fills them from the public API (the same
calls a script would make), so the dashboard can never know more than the API does.
The Content-Security-Policy only allows this origin, which makes "no request leaves
the host" a property the browser enforces rather than a promise.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from agentgate.models import WORK_ORDER_ID_PATTERN
from api.errors import ApiError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_ASSET = re.compile(r"^[a-z0-9_-]+\.(css|js|svg)$")
_MEDIA = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


@cache
def _page(name: str, title: str) -> str:
    layout = (STATIC_DIR / "layout.html").read_text(encoding="utf-8")
    body = (STATIC_DIR / f"{name}.html").read_text(encoding="utf-8")
    return layout.replace("{{title}}", title).replace("{{page}}", name).replace("{{main}}", body)


def _html(name: str, title: str) -> HTMLResponse:
    return HTMLResponse(_page(name, title), headers=PAGE_HEADERS)


@router.get("/", response_class=HTMLResponse)
async def queue_page() -> HTMLResponse:
    return _html("queue", "Queue · AgentGate")


@router.get("/submit", response_class=HTMLResponse)
async def submit_page() -> HTMLResponse:
    return _html("submit", "Submit · AgentGate")


@router.get("/work-orders/{work_order_id}", response_class=HTMLResponse)
async def work_order_page(work_order_id: str) -> HTMLResponse:
    if not re.match(WORK_ORDER_ID_PATTERN, work_order_id):
        raise ApiError(404, "not_found", f"{work_order_id!r} is not a work-order id")
    return _html("work_order", f"{work_order_id} · AgentGate")


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if not _ASSET.match(name) or not path.is_file():
        raise ApiError(404, "not_found", f"no asset {name!r}")
    return FileResponse(path, media_type=_MEDIA[path.suffix], headers={"Cache-Control": "no-cache"})
