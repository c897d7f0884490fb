"""The agent's change as data: which paths changed how, and which lines were added or removed.

Contracts, the secret scan, gate integrity and the sanity checks all judge the diff
between the run's base commit and the snapshot, so it is read once, from git, here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from agentgate import git

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class FileChange:
    status: str  # A, M, D, R, C, T
    path: str  # the new path (the old one for deletions)
    old_path: str | None = None  # for renames and copies


@dataclass
class FileDiff:
    added: list[tuple[int, str]] = field(default_factory=list)  # (line in new file, text)
    removed: list[tuple[int, str]] = field(default_factory=list)  # (line in old file, text)
    binary: bool = False


@dataclass
class DiffData:
    base: str
    head: str
    changes: list[FileChange] = field(default_factory=list)
    files: dict[str, FileDiff] = field(default_factory=dict)  # keyed by new path (old path for deletions)
    head_files: list[str] = field(default_factory=list)

    def by_status(self, *statuses: str) -> list[FileChange]:
        return [c for c in self.changes if c.status in statuses]

    def present_changed(self) -> list[str]:
        """Paths that exist after the change and were added, modified or renamed into place."""
        return [c.path for c in self.changes if c.status != "D"]

    def added_lines(self, path: str) -> list[tuple[int, str]]:
        fd = self.files.get(path)
        return fd.added if fd else []


def parse_name_status(text: str) -> list[FileChange]:
    changes = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0]:
            continue
        status = parts[0][0]
        if status in ("R", "C") and len(parts) >= 3:
            changes.append(FileChange(status=status, path=parts[2], old_path=parts[1]))
        else:
            changes.append(FileChange(status=status, path=parts[1]))
    return changes


def parse_unified_diff(text: str) -> dict[str, FileDiff]:
    """Added/removed lines with their line numbers, from `git diff -U0` output."""
    files: dict[str, FileDiff] = {}
    current: FileDiff | None = None
    old_path = new_path = None
    old_no = new_no = 0
    for line in text.splitlines():
        if line.startswith("diff --git "):
            current, old_path, new_path = None, None, None
            continue
        if current is None or line.startswith(("--- ", "+++ ", "Binary files ")):
            if line.startswith("--- "):
                old_path = None if line[4:] == "/dev/null" else line[6:]
            elif line.startswith("+++ "):
                new_path = None if line[4:] == "/dev/null" else line[6:]
                key = new_path or old_path
                if key is not None:
                    current = files.setdefault(key, FileDiff())
            elif line.startswith("Binary files "):
                m = re.match(r"Binary files (?:a/(.*?)|/dev/null) and (?:b/(.*)|/dev/null) differ", line)
                if m:
                    files.setdefault(m.group(2) or m.group(1), FileDiff()).binary = True
            continue
        m = _HUNK.match(line)
        if m:
            old_no, new_no = int(m.group(1)), int(m.group(3))
            continue
        if line.startswith("+"):
            current.added.append((new_no, line[1:]))
            new_no += 1
        elif line.startswith("-"):
            current.removed.append((old_no, line[1:]))
            old_no += 1
        elif line.startswith(" "):
            old_no += 1
            new_no += 1
    return files


async def collect_diff(workspace: str | Path, base: str, head: str) -> DiffData:
    status = await git.git(workspace, "-c", "core.quotePath=false", "diff", "--name-status", "-M", base, head)
    patch = await git.git(
        workspace, "-c", "core.quotePath=false", "diff", "-U0", "--no-color", "--no-ext-diff", "-M", base, head
    )
    listing = await git.git(workspace, "-c", "core.quotePath=false", "ls-tree", "-r", "--name-only", head)
    return DiffData(
        base=base,
        head=head,
        changes=parse_name_status(status),
        files=parse_unified_diff(patch),
        head_files=[p for p in listing.splitlines() if p],
    )


async def read_at(workspace: str | Path, commit: str, path: str) -> str | None:
    """A file's text at a commit, or None when it does not exist there."""
    try:
        return await git.git(workspace, "show", f"{commit}:{path}")
    except git.GitError:
        return None


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """gitignore-flavoured globs: no slash matches the name anywhere; `**` crosses directories."""
    anchored = "/" in pattern.rstrip("/")
    pat = pattern.lstrip("/")
    if pat.endswith("/"):
        pat += "**"
    out = ""
    i = 0
    while i < len(pat):
        ch = pat[i]
        if pat.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pat.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            j = pat.find("]", i)
            if j == -1:
                out += re.escape(ch)
            else:
                out += "[" + pat[i + 1 : j].replace("!", "^", 1) + "]"
                i = j
        else:
            out += re.escape(ch)
        i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"^{prefix}{out}$")


_GLOB_CACHE: dict[str, re.Pattern[str]] = {}


def glob_match(pattern: str, path: str) -> bool:
    rx = _GLOB_CACHE.get(pattern)
    if rx is None:
        rx = _GLOB_CACHE[pattern] = glob_to_regex(pattern)
    return bool(rx.match(path))


def matches_any(patterns: list[str], path: str) -> str | None:
    return next((p for p in patterns if glob_match(p, path)), None)
