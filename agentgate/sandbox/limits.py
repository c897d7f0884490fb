"""Resource limits the host kernel enforces for a sandbox, and naming the one a run hit.

Why cgroups first: RLIMIT_NPROC does not limit root at all (the kernel exempts uid 0 of the
initial user namespace) and counts every process of the uid on the machine otherwise; RLIMIT_AS
limits each process's *address space*, which Node and Go based agent CLIs reserve by the gigabyte
without using it. A cgroup counts the sandbox's tree and its real memory. rlimits are the
fallback where no cgroup controller is writable, and the only means for CPU seconds and file size.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal as _signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentgate.sandbox.policy import SandboxPolicy

RESOURCE_EXCEEDED = "resource_exceeded"
CGROUP_ROOT = Path("/sys/fs/cgroup")
_MB = 1024 * 1024


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for the v2 hierarchy) -> this process's cgroup path, from /proc/self/cgroup."""
    found: dict[str, str] = {}
    for line in (_read(Path("/proc/self/cgroup")) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            found[""] = path
        for ctrl in controllers.split(","):
            if ctrl:
                found[ctrl] = path
    return found


def _parent_dir(mount: Path, own: str | None) -> Path:
    """Nest under our own cgroup when it is visible, so limits set on the worker still apply above us."""
    if own and own != "/":
        candidate = mount / own.lstrip("/")
        if candidate.is_dir():
            return candidate
    return mount


@dataclass
class CgroupSet:
    """The cgroup directories one sandbox runs in (v1: one per controller; v2: a single one)."""

    dirs: dict[str, Path] = field(default_factory=dict)  # controller -> directory
    version: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def join_paths(self) -> list[str]:
        return sorted({str(p) for p in self.dirs.values()})

    def controllers(self) -> list[str]:
        return sorted(self.dirs)

    def evidence(self) -> dict[str, Any]:
        """Counters that prove a limit was hit, read after the run and before `remove`."""
        out: dict[str, Any] = {}
        pids_dir = self.dirs.get("pids")
        if pids_dir is not None:
            events = _kv(_read(pids_dir / "pids.events"))
            out["pids_max_events"] = events.get("max", 0)
            peak = _read(pids_dir / "pids.peak")
            if peak and peak.strip().isdigit():
                out["pids_peak"] = int(peak)
        mem_dir = self.dirs.get("memory")
        if mem_dir is not None:
            if self.version == 2:
                events = _kv(_read(mem_dir / "memory.events"))
                out["memory_oom_kills"] = events.get("oom_kill", 0)
                out["memory_max_events"] = events.get("max", 0)
            else:
                oom = _kv(_read(mem_dir / "memory.oom_control"))
                out["memory_oom_kills"] = oom.get("oom_kill", 0)
                failcnt = (_read(mem_dir / "memory.failcnt") or "0").strip()
                out["memory_max_events"] = int(failcnt) if failcnt.isdigit() else 0
        return out

    def remove(self, timeout: float = 3.0) -> list[str]:
        """Kill what is left in our cgroups (ours alone) and delete them; returns what could not be removed."""
        left: list[str] = []
        for path in sorted(set(self.dirs.values()), key=lambda p: len(str(p)), reverse=True):
            deadline = time.monotonic() + timeout
            while path.exists():
                if self.version == 2 and (path / "cgroup.kill").exists():
                    with contextlib.suppress(OSError):
                        (path / "cgroup.kill").write_text("1")
                else:
                    for pid in _procs(path):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(pid, _signal.SIGKILL)
                try:
                    path.rmdir()
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        left.append(str(path))
                        break
                    time.sleep(0.05)
        return left


def _kv(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _procs(path: Path) -> list[int]:
    return [int(x) for x in (_read(path / "cgroup.procs") or "").split() if x.isdigit()]


def cgroup_support() -> tuple[int, str]:
    """(version usable for pids+memory, reason): 1, 2, or 0 with why not."""
    own = _own_cgroups()
    v1_ok = all(
        (CGROUP_ROOT / c / "cgroup.procs").exists() and os.access(_parent_dir(CGROUP_ROOT / c, own.get(c)), os.W_OK)
        for c in ("pids", "memory")
    )
    if v1_ok:
        return 1, "cgroup v1 pids+memory hierarchies are writable"
    for mount in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        controllers = (_read(mount / "cgroup.controllers") or "").split()
        if {"pids", "memory"} <= set(controllers):
            parent = _parent_dir(mount, own.get(""))
            if os.access(parent, os.W_OK):
                return 2, f"cgroup v2 at {mount} is writable"
            return 0, f"cgroup v2 at {mount} has pids+memory but {parent} is not writable (no delegation)"
    return 0, "no writable cgroup hierarchy with the pids and memory controllers"


def create_cgroups(policy: SandboxPolicy, label: str | None = None) -> CgroupSet | None:
    """Cgroups carrying the policy's memory / pids / cpus limits, or None when none is needed or possible."""
    wanted = {
        "memory": policy.memory_mb is not None,
        "pids": policy.pids is not None,
        "cpu": policy.cpus is not None,
    }
    if not any(wanted.values()):
        return None
    version, reason = cgroup_support()
    if version == 0:
        return CgroupSet(notes=[f"cgroups unavailable: {reason}"])
    name = f"agentgate-{label or uuid.uuid4().hex[:12]}"
    own = _own_cgroups()
    cg = CgroupSet(version=version)
    try:
        if version == 1:
            for ctrl, need in wanted.items():
                if not need:
                    continue
                mount = CGROUP_ROOT / ctrl
                if not (mount / "cgroup.procs").exists():
                    cg.notes.append(f"cgroup v1 controller {ctrl} not mounted")
                    continue
                d = _parent_dir(mount, own.get(ctrl)) / name
                d.mkdir()
                cg.dirs[ctrl] = d
            _apply_v1(cg, policy)
        else:
            mount = CGROUP_ROOT if (CGROUP_ROOT / "cgroup.controllers").exists() else CGROUP_ROOT / "unified"
            parent = _parent_dir(mount, own.get(""))
            enabled = set((_read(parent / "cgroup.subtree_control") or "").split())
            need = {c for c, w in wanted.items() if w} - enabled
            if need:
                # Fails with EBUSY when the parent holds processes (the "no internal processes" rule).
                (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(need)))
            d = parent / name
            d.mkdir()
            for ctrl, w in wanted.items():
                if w:
                    cg.dirs[ctrl] = d
            _apply_v2(d, policy)
    except OSError as exc:
        cg.notes.append(f"cgroup setup failed: {exc}")
        cg.remove()
        return CgroupSet(notes=cg.notes)
    return cg


def _apply_v1(cg: CgroupSet, policy: SandboxPolicy) -> None:
    if "memory" in cg.dirs and policy.memory_mb is not None:
        d = cg.dirs["memory"]
        limit = str(policy.memory_mb * _MB)
        (d / "memory.limit_in_bytes").write_text(limit)
        if (d / "memory.memsw.limit_in_bytes").exists():  # swap accounting on: swap counts too
            with contextlib.suppress(OSError):
                (d / "memory.memsw.limit_in_bytes").write_text(limit)
    if "pids" in cg.dirs and policy.pids is not None:
        (cg.dirs["pids"] / "pids.max").write_text(str(policy.pids))
    if "cpu" in cg.dirs and policy.cpus is not None:
        period = 100_000
        (cg.dirs["cpu"] / "cpu.cfs_period_us").write_text(str(period))
        (cg.dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(max(1000, int(policy.cpus * period))))


def _apply_v2(d: Path, policy: SandboxPolicy) -> None:
    if policy.memory_mb is not None:
        (d / "memory.max").write_text(str(policy.memory_mb * _MB))
        if (d / "memory.swap.max").exists():
            (d / "memory.swap.max").write_text("0")
    if policy.pids is not None:
        (d / "pids.max").write_text(str(policy.pids))
    if policy.cpus is not None:
        period = 100_000
        (d / "cpu.max").write_text(f"{max(1000, int(policy.cpus * period))} {period}")


def rlimit_args(policy: SandboxPolicy, cgroups: CgroupSet | None) -> tuple[list[str], list[str]]:
    """Launcher `--rlimit` values and notes about what is enforced how."""
    args: list[str] = []
    notes: list[str] = []
    has = set(cgroups.dirs) if cgroups else set()
    if policy.memory_mb is not None:
        if "memory" in has:
            notes.append(f"memory {policy.memory_mb} MB: cgroup v{cgroups.version} (whole tree)")
        else:
            args.append(f"as={policy.memory_mb * _MB}")
            notes.append(f"memory {policy.memory_mb} MB: RLIMIT_AS per process (address space, not RSS)")
    if policy.pids is not None:
        if "pids" in has:
            notes.append(f"pids {policy.pids}: cgroup v{cgroups.version} (whole tree)")
        elif os.getuid() != 0:
            args.append(f"nproc={policy.pids + _user_process_count(os.getuid())}")
            notes.append(f"pids {policy.pids}: RLIMIT_NPROC on top of the uid's current processes")
        else:
            notes.append(f"pids {policy.pids}: NOT enforced (no cgroup, and RLIMIT_NPROC does not bind root)")
    if policy.cpu_seconds is not None:
        args.append(f"cpu={policy.cpu_seconds}")
        notes.append(f"cpu {policy.cpu_seconds} s: RLIMIT_CPU per process")
    if policy.cpus is not None:
        notes.append(
            f"cpus {policy.cpus}: cgroup quota" if "cpu" in has else f"cpus {policy.cpus}: NOT enforced (no cgroup)"
        )
    if policy.disk_mb is not None:
        args.append(f"fsize={policy.disk_mb * _MB}")
        notes.append(f"disk {policy.disk_mb} MB: RLIMIT_FSIZE per file + workspace size checked after the run")
    return args, notes


def _user_process_count(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
    return count


def directory_size_mb(path: str | Path, stop_after_mb: float | None = None) -> float:
    """Allocated size of a tree (hard links once); stops early past `stop_after_mb` so huge trees stay cheap."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [str(path)]
    limit = stop_after_mb * _MB if stop_after_mb is not None else None
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1:
                if key in seen:
                    continue
                seen.add(key)
            total += getattr(st, "st_blocks", 0) * 512 or st.st_size
            if limit is not None and total > limit:
                return total / _MB
    return total / _MB


_FORK_FAILED = re.compile(
    r"Resource temporarily unavailable|fork: retry|Cannot fork|can't start new thread|"
    r"fork failed|EAGAIN|pthread_create failed|Cannot allocate memory.*fork",
    re.I,
)
_OUT_OF_MEMORY = re.compile(
    r"MemoryError|Cannot allocate memory|out of memory|bad_alloc|heap out of memory|"
    r"failed to allocate|memory allocation .* failed|ENOMEM",
    re.I,
)
_FILE_TOO_LARGE = re.compile(r"File too large|EFBIG|No space left on device|Disk quota exceeded", re.I)


def _exit_signal(exit_code: int | None, signal: int | None) -> int | None:
    if signal:
        return signal
    if exit_code is None:
        return None
    if exit_code < 0:
        return -exit_code
    if 128 < exit_code < 128 + 65:  # a shell or bwrap reporting its child's death by signal
        return exit_code - 128
    return None


def classify_exit(
    exit_code: int | None,
    signal: int | None,
    stderr_tail: str,
    policy: SandboxPolicy,
    evidence: dict[str, Any] | None = None,
) -> str | None:
    """Name the resource limit a run exceeded ("memory limit 256 MB"), or None if it was not one.

    `evidence` is `WrappedCommand.evidence()` (cgroup counters, workspace size): with it the answer
    is certain; without it, the exit signal and stderr are read, and only limits the policy set count.
    """
    ev = evidence or {}
    sig = _exit_signal(exit_code, signal)
    failed = sig is not None or (exit_code not in (0, None))
    stderr_tail = stderr_tail or ""
    if policy.pids is not None and (
        ev.get("pids_max_events", 0) > 0
        or ("pids_max_events" not in ev and failed and _FORK_FAILED.search(stderr_tail))
    ):
        return f"pids limit {policy.pids}"
    if policy.memory_mb is not None and (
        ev.get("memory_oom_kills", 0) > 0
        or (failed and sig == _signal.SIGKILL and ev.get("memory_max_events", 0) > 0)
        or (failed and "memory_oom_kills" not in ev and _OUT_OF_MEMORY.search(stderr_tail))
    ):
        return f"memory limit {policy.memory_mb} MB"
    if policy.cpu_seconds is not None and sig == _signal.SIGXCPU:
        return f"cpu limit {policy.cpu_seconds} s"
    if policy.disk_mb is not None and (
        sig == _signal.SIGXFSZ or ev.get("disk_exceeded") or (failed and _FILE_TOO_LARGE.search(stderr_tail))
    ):
        return f"disk limit {policy.disk_mb} MB"
    return None
