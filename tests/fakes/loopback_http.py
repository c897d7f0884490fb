"""Plain HTTP servers on the worker's 127.0.0.1 that answer every GET with a fixed body.

Sandbox tests use them as "the outside": a process confined to network `none` must not reach them,
one with `full` (or an allowlist naming them) must read the body.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextlib.contextmanager
def serving(body: bytes, count: int = 1) -> Iterator[list[int]]:
    """`count` servers answering `body`; yields their ports and stops them afterwards."""

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    started = [ThreadingHTTPServer(("127.0.0.1", 0), Answer) for _ in range(count)]
    for server in started:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield [s.server_port for s in started]
    finally:
        for server in started:
            server.shutdown()
            server.server_close()
