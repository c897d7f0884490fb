"""The filtering HTTP proxy behind network `allowlist`.

It runs in the worker (its own thread and event loop, so it does not depend on whoever drives the
agent's loop) and listens on a unix socket that is bind-mounted into the sandbox; inside, the relay
(`_relay.py`) exposes it as 127.0.0.1:PORT and HTTPS_PROXY points there. The sandbox has no other
route out: its network namespace holds only loopback. Names are resolved here, outside, so the agent
cannot pick the address an allowed name connects to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_HEAD_LIMIT = 64 * 1024
_HOP_HEADERS = {b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive"}


@dataclass
class Decision:
    host: str
    port: int
    allowed: bool


def _split_host(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host.lower(), int(rest[1:]) if rest.startswith(":") else None
    host, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and host:
        return host.lower().rstrip("."), int(port)
    return entry.lower().rstrip("."), None


@dataclass
class Allowlist:
    entries: list[str]

    def allows(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".").strip("[]")
        for entry in self.entries:
            name, want_port = _split_host(entry)
            ports = {want_port} if want_port is not None else {80, 443}
            if port not in ports:
                continue
            if name.startswith("*."):
                if host.endswith(name[1:]) and host != name[2:]:
                    return True
            elif host == name:
                return True
        return False


@dataclass
class AllowlistProxy:
    """CONNECT (and absolute-form plain HTTP) proxy that only reaches allowlisted host:port pairs."""

    hosts: Iterable[str]
    connect_timeout: float = 15.0
    decisions: list[Decision] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.allowlist = Allowlist(list(self.hosts))
        self._dir: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def socket_dir(self) -> str:
        assert self._dir is not None, "start() first"
        return self._dir

    @property
    def socket_path(self) -> str:
        return str(Path(self.socket_dir) / "proxy.sock")

    def start(self) -> str:
        """Listen and return the socket path; the directory (0700) is what gets bind-mounted."""
        self._dir = tempfile.mkdtemp(prefix="agentgate-proxy-")
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_unix_server(self._handle, path=self.socket_path))
            except BaseException as exc:  # surfaced to start()'s caller
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="agentgate-allowlist-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self.socket_path

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None and not loop.is_closed():

            async def _close() -> None:
                server.close()
                for task in asyncio.all_tasks():
                    if task is not asyncio.current_task():
                        task.cancel()

            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(_close(), loop).result(5)
                loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        if self._dir is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
            with contextlib.suppress(OSError):
                os.rmdir(self._dir)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            if len(head) > _HEAD_LIMIT:
                return
            request_line, _, rest = head.partition(b"\r\n")
            parts = request_line.split()
            if len(parts) != 3:
                await self._refuse(writer, 400, "malformed request line")
                return
            method, target, version = parts
            if method.upper() == b"CONNECT":
                host, port = _split_host(target.decode("latin-1"))
                port = port or 443
                tunnel_head = b""
            elif target.lower().startswith(b"http://"):
                authority, _, path = target[7:].partition(b"/")
                host, port = _split_host(authority.decode("latin-1"))
                port = port or 80
                tunnel_head = _origin_form(method, b"/" + path, version, rest)
            else:
                await self._refuse(writer, 400, "only CONNECT and absolute http:// requests are proxied")
                return
            allowed = self.allowlist.allows(host, port)
            self.decisions.append(Decision(host, port, allowed))
            if not allowed:
                await self._refuse(writer, 403, f"{host}:{port} is not in the sandbox's network allowlist")
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), timeout=self.connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                await self._refuse(writer, 502, f"cannot reach {host}:{port}: {exc}")
                return
            if tunnel_head:
                up_writer.write(tunnel_head)
            else:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                with contextlib.suppress(Exception):
                    up_writer.close()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, why: str) -> None:
        reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
        body = f"agentgate sandbox: {why}\n".encode()
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()


def _origin_form(method: bytes, path: bytes, version: bytes, rest: bytes) -> bytes:
    """Rewrite a proxy request for the origin; `Connection: close` so the connection is not reused elsewhere."""
    lines = [line for line in rest.split(b"\r\n") if line]
    kept = [line for line in lines if line.split(b":", 1)[0].strip().lower() not in _HOP_HEADERS]
    return b"\r\n".join([method + b" " + path + b" " + version, *kept, b"Connection: close", b"", b""])


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
