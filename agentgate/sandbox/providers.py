"""Sandbox providers: none, bubblewrap, docker/podman, and `auto`, which picks the strongest that runs here."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentgate.sandbox.base import (
    SandboxConfigError,
    SandboxProvider,
    SandboxUnavailable,
    WrappedCommand,
    child_env,
    mount_plan,
)
from agentgate.sandbox.limits import CgroupSet, cgroup_support, create_cgroups, directory_size_mb, rlimit_args
from agentgate.sandbox.policy import SandboxPolicy
from agentgate.sandbox.proxy import AllowlistProxy
from agentgate.sandbox.proxy import _split_host as split_host

_HERE = Path(__file__).resolve().parent
LAUNCHER = str(_HERE / "_launch.py")
RELAY = str(_HERE / "_relay.py")
PROXY_DIR_INSIDE = "/tmp/.agentgate-proxy"
PROXY_PORT_INSIDE = 3128


def _python() -> str:
    return os.path.realpath(sys.executable)


def _launcher_argv(env_names: Sequence[str], rlimits: Sequence[str], cgroups: CgroupSet | None) -> list[str]:
    argv = [_python(), "-I", "-S", LAUNCHER, "--keep-env", ",".join(sorted(env_names))]
    for value in rlimits:
        argv += ["--rlimit", value]
    for path in cgroups.join_paths if cgroups else []:
        argv += ["--cgroup", path]
    return argv + ["--"]


def _limits(policy: SandboxPolicy, label: str, use_cgroups: bool) -> tuple[CgroupSet | None, list[str], list[str]]:
    cgroups = create_cgroups(policy, label) if use_cgroups else None
    if not use_cgroups and policy.limits_summary():
        cgroups = CgroupSet(notes=["cgroups disabled for this provider"])
    rl, notes = rlimit_args(policy, cgroups)
    if cgroups is not None:
        notes = cgroups.notes + notes
    return cgroups, rl, notes


def _probe(cgroups: CgroupSet | None, workspace: str, policy: SandboxPolicy):
    def probe() -> dict[str, Any]:
        out: dict[str, Any] = cgroups.evidence() if cgroups else {}
        if policy.disk_mb is not None:
            size = directory_size_mb(workspace, stop_after_mb=policy.disk_mb * 1.01)
            out["workspace_mb"] = round(size, 1)
            out["disk_exceeded"] = size > policy.disk_mb
        return out

    return probe


def _cleanup(*steps):
    done = []

    def cleanup() -> None:
        if done:
            return
        done.append(True)
        for step in steps:
            if step is not None:
                step()

    return cleanup


def _summary(name: str, policy: SandboxPolicy, extra: str = "") -> str:
    limits = ", ".join(f"{k} {v}" for k, v in policy.limits_summary().items())
    parts = [f"network {policy.network}"]
    if policy.network == "allowlist":
        parts[0] += f" ({', '.join(policy.allow_hosts)})"
    if limits:
        parts.append(limits)
    if extra:
        parts.append(extra)
    return f"{name}: " + "; ".join(parts)


class NoneProvider:
    """Plain subprocess for trusted local use. Limits still apply (cgroups/rlimits); isolation does not."""

    name = "none"

    def __init__(self, cgroups: bool = True) -> None:
        self.use_cgroups = cgroups

    def available(self) -> tuple[bool, str]:
        return True, "always available (no isolation)"

    def wrap(
        self,
        argv: Sequence[str],
        *,
        workspace: str | Path,
        env: Mapping[str, str],
        policy: SandboxPolicy,
        secrets: Mapping[str, str] | None = None,
    ) -> WrappedCommand:
        if policy.network == "allowlist":
            raise SandboxConfigError("network 'allowlist' needs an isolating provider (bubblewrap)")
        secrets = dict(secrets or {})
        full_env = child_env(env, secrets)
        label = uuid.uuid4().hex[:12]
        cgroups, rl, notes = _limits(policy, label, self.use_cgroups)
        warnings = ["no isolation: the agent sees the host file system, processes and credentials"]
        if policy.network != "full":
            warnings.append(f"network '{policy.network}' NOT enforced by provider none")
        wrapped_argv = _launcher_argv(full_env.keys(), rl, cgroups) + list(argv)
        return WrappedCommand(
            argv=wrapped_argv,
            env=full_env,
            cleanup=_cleanup(cgroups.remove if cgroups else None),
            description=_summary("none", policy, "UNSANDBOXED"),
            provider=self.name,
            network="full",
            warnings=warnings,
            enforcement=notes,
            probe=_probe(cgroups, str(workspace), policy),
            secret_names=sorted(secrets),
        )


@functools.cache
def _bwrap_probe(path: str) -> tuple[bool, str]:
    argv = [path, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "--die-with-parent"]
    argv += ["--cap-drop", "ALL", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bwrap could not be started: {exc}"
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
        return False, f"bwrap cannot create namespaces here: {why}"
    return True, f"{path} creates pid/net/mount namespaces"


class BubblewrapProvider:
    """Linux namespaces via bwrap: read-only host, writable workspace, private /tmp, own PID and network spaces."""

    name = "bubblewrap"

    def __init__(self, bwrap: str | None = None, cgroups: bool = True) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        self.use_cgroups = cgroups

    def available(self) -> tuple[bool, str]:
        path = shutil.which(self.bwrap)
        if path is None:
            return False, f"{self.bwrap} not found on PATH (install the bubblewrap system package)"
        return _bwrap_probe(path)

    def wrap(
        self,
        argv: Sequence[str],
        *,
        workspace: str | Path,
        env: Mapping[str, str],
        policy: SandboxPolicy,
        secrets: Mapping[str, str] | None = None,
    ) -> WrappedCommand:
        ok, reason = self.available()
        if not ok:
            raise SandboxUnavailable(reason)
        workspace = os.path.realpath(workspace)
        secrets = dict(secrets or {})
        label = uuid.uuid4().hex[:12]
        proxy: AllowlistProxy | None = None
        extra_env: dict[str, str] = {}
        inner: list[str] = list(argv)
        if policy.network == "allowlist":
            proxy = AllowlistProxy(policy.allow_hosts)
            proxy.start()
            url = f"http://127.0.0.1:{PROXY_PORT_INSIDE}"
            for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
                extra_env[var] = url
            extra_env["NO_PROXY"] = extra_env["no_proxy"] = _no_proxy(policy.allow_hosts)
            inner = [_python(), "-I", "-S", RELAY, str(PROXY_PORT_INSIDE), f"{PROXY_DIR_INSIDE}/proxy.sock", "--"]
            inner += list(argv)
        full_env = child_env(env, secrets, extra_env)
        try:
            cgroups, rl, notes = _limits(policy, label, self.use_cgroups)
        except BaseException:
            if proxy:
                proxy.stop()
            raise
        bw = self._bwrap_args(workspace, full_env, policy, proxy)
        wrapped_argv = _launcher_argv(full_env.keys(), rl, cgroups) + bw + ["--"] + inner
        warnings = [n for n in notes if "NOT enforced" in n or "unavailable" in n or "failed" in n]
        return WrappedCommand(
            argv=wrapped_argv,
            env=full_env,
            cleanup=_cleanup(proxy.stop if proxy else None, cgroups.remove if cgroups else None),
            description=_summary("bubblewrap", policy),
            provider=self.name,
            network=policy.network,
            warnings=warnings,
            enforcement=notes,
            probe=_proxy_probe(_probe(cgroups, workspace, policy), proxy),
            secret_names=sorted(secrets),
        )

    def _bwrap_args(
        self, workspace: str, env: Mapping[str, str], policy: SandboxPolicy, proxy: AllowlistProxy | None
    ) -> list[str]:
        args = [shutil.which(self.bwrap) or self.bwrap, "--die-with-parent", "--new-session"]
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if policy.network != "full":
            args.append("--unshare-net")
        args += ["--cap-drop", "ALL", "--hostname", "agentgate-sandbox"]
        args += ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
        if policy.disk_mb is not None:
            args += ["--size", str(policy.disk_mb * 1024 * 1024)]
        args += ["--tmpfs", "/tmp"]
        hidden_dirs: list[str] = []
        for mount in mount_plan(workspace, env, policy, host_view=True):
            if mount.kind == "hide" and os.path.isdir(mount.path):
                args += ["--tmpfs", mount.path]
                hidden_dirs.append(mount.path)
            elif mount.kind == "hide":
                args += ["--ro-bind", "/dev/null", mount.path]
            else:
                flag = "--ro-bind" if mount.kind == "ro" else "--bind"
                args += [flag + ("-try" if mount.optional else ""), mount.path, mount.path]
        if proxy is not None:
            args += ["--ro-bind", proxy.socket_dir, PROXY_DIR_INSIDE]
        for path in hidden_dirs:  # last, so mount points for the binds above could still be created
            args += ["--remount-ro", path]
        args += ["--chdir", workspace]
        return args


def _no_proxy(allow_hosts: Sequence[str]) -> str:
    """Loopback goes direct (the agent's own test servers live inside the sandbox), except a loopback
    name the allowlist names: that one is a *worker* service (a local model gateway), reached via the proxy."""
    allowed = {split_host(entry)[0] for entry in allow_hosts}
    return ",".join(name for name in ("localhost", "127.0.0.1", "::1") if name not in allowed)


def _proxy_probe(inner, proxy: AllowlistProxy | None):
    if proxy is None:
        return inner

    def probe() -> dict[str, Any]:
        out = inner()
        out["network_denied"] = sorted({f"{d.host}:{d.port}" for d in proxy.decisions if not d.allowed})
        out["network_allowed"] = sorted({f"{d.host}:{d.port}" for d in proxy.decisions if d.allowed})
        return out

    return probe


class ContainerProvider:
    """docker or podman: the engine's own isolation, limits and network; needs an image holding the agent CLI."""

    def __init__(self, engine: str = "docker") -> None:
        self.name = engine
        self.engine = engine

    def available(self) -> tuple[bool, str]:
        path = shutil.which(self.engine)
        if path is None:
            return False, f"{self.engine} not found on PATH"
        try:
            done = subprocess.run(
                [path, "info", "--format", "{{.ServerVersion}}"],
                capture_output=True,
                text=True,
                timeout=10,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"{self.engine} does not answer: {exc}"
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            return False, f"{self.engine} engine not usable: {why[-1] if why else done.returncode}"
        return True, f"{self.engine} engine {done.stdout.strip()} answers"

    def build_argv(
        self,
        argv: Sequence[str],
        *,
        workspace: str,
        env_names: Sequence[str],
        policy: SandboxPolicy,
        name: str,
    ) -> list[str]:
        """The engine command line; env values are never in it (`-e NAME` reads them from the client's env)."""
        if policy.network == "allowlist":
            raise SandboxConfigError(
                f"network 'allowlist' is not implemented for {self.engine}; use bubblewrap, or network none/full"
            )
        if not policy.image:
            raise SandboxConfigError(f"provider {self.engine} needs policy.image (an image holding the agent CLI)")
        tmp_mb = policy.disk_mb or 512
        cmd = [self.engine, "run", "--rm", "-i", "--init", "--name", name, "--label", "agentgate.sandbox=1"]
        cmd += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--read-only"]
        cmd += ["--tmpfs", f"/tmp:rw,nosuid,nodev,size={tmp_mb}m"]
        cmd += ["--network", "none" if policy.network == "none" else "bridge"]
        cmd += ["--user", f"{os.getuid()}:{os.getgid()}"]
        if policy.memory_mb is not None:
            cmd += ["--memory", f"{policy.memory_mb}m", "--memory-swap", f"{policy.memory_mb}m"]
        if policy.pids is not None:
            cmd += ["--pids-limit", str(policy.pids)]
        if policy.cpus is not None:
            cmd += ["--cpus", f"{policy.cpus:g}"]
        if policy.cpu_seconds is not None:
            cmd += ["--ulimit", f"cpu={policy.cpu_seconds}:{policy.cpu_seconds + 5}"]
        if policy.disk_mb is not None:
            size = policy.disk_mb * 1024 * 1024
            cmd += ["--ulimit", f"fsize={size}:{size}"]
        for mount in mount_plan(workspace, {}, policy, host_view=False):
            if mount.optional and not os.path.exists(mount.path):
                continue  # the engine would create a missing source as an empty root-owned directory
            cmd += ["-v", f"{mount.path}:{mount.path}:{mount.kind}"]
        cmd += ["-w", workspace]
        for env_name in sorted(env_names):
            if env_name != "PATH":  # the image's own PATH, not the worker's
                cmd += ["-e", env_name]
        return cmd + [policy.image] + list(argv)

    def wrap(
        self,
        argv: Sequence[str],
        *,
        workspace: str | Path,
        env: Mapping[str, str],
        policy: SandboxPolicy,
        secrets: Mapping[str, str] | None = None,
    ) -> WrappedCommand:
        ok, reason = self.available()
        if not ok:
            raise SandboxUnavailable(reason)
        workspace = os.path.realpath(workspace)
        secrets = dict(secrets or {})
        full_env = child_env(env, secrets)
        name = f"agentgate-{uuid.uuid4().hex[:16]}"
        cmd = self.build_argv(argv, workspace=workspace, env_names=list(full_env), policy=policy, name=name)
        engine = shutil.which(self.engine) or self.engine
        # The client's own env: what it needs to reach the engine, plus the values `-e NAME` forwards.
        client_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_HOST", "XDG_RUNTIME_DIR")}
        client_env.update(full_env)

        def remove_container() -> None:
            # Killing the client does not stop the container: remove it explicitly, by its unique name.
            subprocess.run(
                [engine, "rm", "-f", name], capture_output=True, timeout=30, stdin=subprocess.DEVNULL, check=False
            )

        return WrappedCommand(
            argv=cmd,
            env=client_env,
            cleanup=_cleanup(remove_container),
            description=_summary(self.engine, policy, f"image {policy.image}"),
            provider=self.name,
            network=policy.network,
            enforcement=[f"{k} {v}: engine flags" for k, v in policy.limits_summary().items()],
            probe=None,
            secret_names=sorted(secrets),
        )


def get_provider(name: str, **kwargs: Any) -> SandboxProvider:
    if name == "none":
        return NoneProvider(**kwargs)
    if name == "bubblewrap":
        return BubblewrapProvider(**kwargs)
    if name in ("docker", "podman"):
        return ContainerProvider(name)
    raise SandboxConfigError(f"unknown sandbox provider {name!r}")


def candidates(policy: SandboxPolicy) -> list[str]:
    """`auto`'s preference order: engines only with an image to run, none only as a permitted last resort."""
    order: list[str] = []
    if policy.image and policy.network != "allowlist":
        order += ["docker", "podman"]
    order.append("bubblewrap")
    if policy.allow_unsandboxed and policy.network != "allowlist":
        order.append("none")
    return order


def select_provider(policy: SandboxPolicy) -> tuple[SandboxProvider, list[str]]:
    """The provider to use and why (one line per candidate tried), for the run record."""
    if policy.provider != "auto":
        provider = get_provider(policy.provider)
        ok, reason = provider.available()
        if not ok:
            raise SandboxUnavailable(f"sandbox provider {policy.provider} unavailable: {reason}")
        return provider, [f"{policy.provider}: requested; {reason}"]
    tried: list[str] = []
    for name in candidates(policy):
        provider = get_provider(name)
        ok, reason = provider.available()
        tried.append(f"{name}: {'chosen' if ok else 'skipped'} ({reason})")
        if ok:
            return provider, tried
    raise SandboxUnavailable("no sandbox provider available: " + "; ".join(tried))


def wrap_command(
    argv: Sequence[str],
    *,
    workspace: str | Path,
    env: Mapping[str, str],
    policy: SandboxPolicy,
    secrets: Mapping[str, str] | None = None,
) -> WrappedCommand:
    """Select (auto or named), wrap, and record how the choice was made in the command's record."""
    provider, why = select_provider(policy)
    wrapped = provider.wrap(argv, workspace=workspace, env=env, policy=policy, secrets=secrets)
    if provider.name == "none" and policy.provider == "auto":
        wrapped.warnings.insert(0, "auto found no isolating provider: running unsandboxed")
    wrapped.enforcement = [f"selection: {line}" for line in why] + wrapped.enforcement
    wrapped.description += f" (auto: {why[-1]})" if policy.provider == "auto" else ""
    return wrapped


def host_report() -> dict[str, Any]:
    """What this host can do, for `agentgate doctor`-style output and test skip reasons."""
    report: dict[str, Any] = {}
    for name in ("bubblewrap", "docker", "podman"):
        ok, reason = get_provider(name).available()
        report[name] = {"available": ok, "reason": reason}
    version, reason = cgroup_support()
    report["cgroups"] = {"version": version, "reason": reason}
    return report


__all__ = [
    "BubblewrapProvider",
    "ContainerProvider",
    "NoneProvider",
    "get_provider",
    "host_report",
    "select_provider",
    "wrap_command",
]
