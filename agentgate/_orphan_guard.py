"""Die with the worker: set the parent-death signal, then exec the real command.

Run as `python -I -S _orphan_guard.py <worker pid> -- argv...`, stdlib only. It replaces a
`preexec_fn` in the worker: any `preexec_fn` makes CPython run Python code in the forked child of a
multi-threaded process, and on 3.11 that child can deadlock on the interpreter's runtime lock
(python/cpython#112275) — and with it the event loop waiting for the child, i.e. the whole worker.
Here the fork is a plain fork+exec, and the prctl happens in a fresh, single-threaded interpreter.
"""

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main(args):
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("agentgate-guard: usage: _orphan_guard.py <parent pid> -- argv...\n")
        return 125
    parent, argv = int(args[0]), args[2:]
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass  # not Linux/glibc: the worker's start-up reaper still finds what it leaves behind
    if os.getppid() != parent:  # the worker died before the signal was armed: nobody waits for this run
        return 125
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write(f"agentgate: cannot execute {argv[0]}: {exc}\n")
        return 127 if isinstance(exc, FileNotFoundError) else 126


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
