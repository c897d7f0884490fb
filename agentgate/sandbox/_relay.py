"""Inner relay: runs inside the sandbox's own network namespace, then becomes the agent.

Run as `python -I -S _relay.py PORT SOCKET -- argv...`, stdlib only. A sandbox with network
`allowlist` has only its own loopback; HTTP clients need a TCP proxy address, and the filtering
proxy lives outside (in the worker) behind a bind-mounted unix socket. This process binds
127.0.0.1:PORT *before* the agent starts (no race), forks a relay that pipes each TCP connection
to the unix socket, and execs the agent. The relay dies with the PID namespace when the agent ends.
"""

import os
import socket
import sys
import threading


def _pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _serve(conn, path):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        conn.close()
        upstream.close()
        return
    back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
    back.start()
    _pipe(conn, upstream)
    back.join()
    conn.close()
    upstream.close()


def _relay(listener, path):
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve, args=(conn, path), daemon=True).start()


def main(args):
    port, path, sep, argv = int(args[0]), args[1], args[2], args[3:]
    if sep != "--" or not argv:
        sys.stderr.write("agentgate-sandbox relay: bad arguments\n")
        return 125
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    if os.fork() == 0:
        try:
            _relay(listener, path)
        finally:
            os._exit(0)
    listener.close()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write(f"agentgate-sandbox: cannot execute {argv[0]}: {exc}\n")
        return 127 if isinstance(exc, FileNotFoundError) else 126


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
