"""Outer launcher: runs outside the sandbox, just before the sandbox (or the plain command) starts.

Run as `python -I -S _launch.py [options] -- argv...`, stdlib only, because it executes between
the worker and bwrap/the agent with nothing of AgentGate importable. It exists so that

* the environment is cut down to named variables here, not in argv: bwrap's `--setenv NAME VALUE`
  would put secret values into a world-readable /proc/<pid>/cmdline and into agent-N.json;
* the process joins its cgroups *before* exec, so every descendant is counted from the first fork;
* rlimits are set once and inherited by the whole tree.
"""

import os
import resource
import sys

_RLIMITS = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE,
}


def main(args):
    keep = None
    extra = {}
    cgroups = []
    limits = []
    while args and args[0] != "--":
        opt, value = args[0], args[1]
        args = args[2:]
        if opt == "--keep-env":
            keep = set(filter(None, value.split(",")))
        elif opt == "--set-env":
            name, _, val = value.partition("=")
            extra[name] = val
        elif opt == "--cgroup":
            cgroups.append(value)
        elif opt == "--rlimit":
            name, _, val = value.partition("=")
            limits.append((_RLIMITS[name], int(val)))
        else:
            sys.stderr.write(f"agentgate-sandbox: unknown launcher option {opt}\n")
            return 125
    argv = args[1:]
    if not argv:
        sys.stderr.write("agentgate-sandbox: no command\n")
        return 125
    if keep is not None:
        # The worker's tree marker and its owner marker must survive: run_streaming finds the tree by the
        # first, and the next worker's start-up reaper finds a dead worker's leftovers by the second.
        keep.update(("AGENTGATE_PROCESS_TOKEN", "AGENTGATE_WORKER_OWNER"))
        env = {k: v for k, v in os.environ.items() if k in keep}
    else:
        env = dict(os.environ)
    env.update(extra)
    for path in cgroups:
        try:
            with open(os.path.join(path, "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))
        except OSError as exc:
            sys.stderr.write(f"agentgate-sandbox: cannot join cgroup {path}: {exc}\n")
            return 125
    for which, value in limits:
        try:
            _soft, hard = resource.getrlimit(which)
            new_hard = value if hard == resource.RLIM_INFINITY or hard > value else hard
            if which == resource.RLIMIT_CPU:
                # SIGXCPU at the soft limit (classifiable), SIGKILL a little later if it is ignored.
                new_hard = value + 5 if hard == resource.RLIM_INFINITY or hard > value + 5 else hard
            resource.setrlimit(which, (min(value, new_hard), new_hard))
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"agentgate-sandbox: cannot set rlimit: {exc}\n")
            return 125
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        sys.stderr.write(f"agentgate-sandbox: cannot execute {argv[0]}: {exc}\n")
        return 127 if isinstance(exc, FileNotFoundError) else 126


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
