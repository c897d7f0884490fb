"""Where profiles live and how a name becomes resolved settings.

Built-ins ship inside the package (`agentgate/profiles/builtin/*.yaml`) and can be neither
replaced nor deleted; user profiles are `<name>.yaml` files in `settings.profiles_dir`
(AGENTGATE_HOME/profiles), read fresh on every call so an edit on disk takes effect at the
next submission without a restart. A user file named like a built-in is ignored: names of
built-ins are reserved, so `default` means the same thing on every installation.

Resolution follows `extends` from the named profile up to its root (at most
`MAX_EXTENDS_DEPTH` hops, a cycle is an error naming the chain), deep-merges the documents
root first, validates the result and hashes it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agentgate.profiles.errors import ProfileConflict, ProfileError, ProfileNotFound, ProfileProblem
from agentgate.profiles.merge import config_hash, deep_merge
from agentgate.profiles.schema import NAME_RE, ProfileDocument, full_settings, parse_profile_text, validation_problems

MAX_EXTENDS_DEPTH = 8
BUILTIN_NAMES: tuple[str, ...] = ("default", "ci-focused", "rapid-iteration", "ralph-style")
SUFFIX = ".yaml"


@dataclass(frozen=True)
class ResolvedProfile:
    """A profile with its inheritance applied: every harness field, the chain it came from, its hash."""

    name: str
    chain: list[str]  # the profile first, then what it extends, up to the root
    settings: dict[str, Any]
    hash: str
    description: str | None
    builtin: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "builtin": self.builtin,
            "description": self.description,
            "chain": list(self.chain),
            "hash": self.hash,
            "resolved": self.settings,
        }


def check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ProfileError(
            None,
            None,
            [ProfileProblem("name", f"{name!r} is not a valid profile name: use 1-63 of a-z, 0-9, '-', '_'")],
        )


class ProfileStore:
    """Built-in and user profiles; all reads go to disk, all writes are atomic."""

    def __init__(self, user_dir: Path | None) -> None:
        self.user_dir = Path(user_dir) if user_dir is not None else None

    # -- reading -------------------------------------------------------------------------
    def is_builtin(self, name: str) -> bool:
        return name in BUILTIN_NAMES

    def user_path(self, name: str) -> Path:
        check_name(name)
        if self.user_dir is None:
            raise ProfileError(name, None, [ProfileProblem("", "this installation has no user profile directory")])
        return self.user_dir / f"{name}{SUFFIX}"

    def user_names(self) -> list[str]:
        if self.user_dir is None or not self.user_dir.is_dir():
            return []
        names = []
        for path in self.user_dir.glob(f"*{SUFFIX}"):
            stem = path.name[: -len(SUFFIX)]
            if path.is_file() and NAME_RE.match(stem) and stem not in BUILTIN_NAMES:
                names.append(stem)
        return sorted(names)

    def names(self) -> list[str]:
        return [*BUILTIN_NAMES, *self.user_names()]

    def exists(self, name: str) -> bool:
        return name in BUILTIN_NAMES or (
            self.user_dir is not None and NAME_RE.match(name) is not None and self.user_path(name).is_file()
        )

    def load(self, name: str) -> ProfileDocument:
        """The document as written; `ProfileNotFound` or `ProfileError` (with file and line)."""
        if name in BUILTIN_NAMES:
            text = resources.files("agentgate.profiles").joinpath("builtin", f"{name}{SUFFIX}").read_text("utf-8")
            return parse_profile_text(text, name, f"built-in {name}{SUFFIX}", builtin=True)
        if not isinstance(name, str) or not NAME_RE.match(name) or self.user_dir is None:
            raise ProfileNotFound(str(name), self.names())
        path = self.user_path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ProfileNotFound(name, self.names()) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(name, str(path), [ProfileProblem("", f"cannot read the file: {exc}")]) from exc
        return parse_profile_text(text, name, str(path))

    def list(self) -> list[dict[str, Any]]:
        """Every profile with its description and parent; a broken user file is listed with its error."""
        items = []
        for name in self.names():
            entry: dict[str, Any] = {"name": name, "builtin": name in BUILTIN_NAMES}
            try:
                doc = self.load(name)
                entry.update(description=doc.description, extends=doc.extends, error=None)
            except ProfileError as exc:
                entry.update(description=None, extends=None, error=str(exc))
            if name not in BUILTIN_NAMES and self.user_dir is not None:
                entry["path"] = str(self.user_path(name))
            items.append(entry)
        return items

    def resolve(self, name: str, overlay: dict[str, ProfileDocument] | None = None) -> ResolvedProfile:
        """Apply `extends` up to the root. `overlay` stands in for stored documents (to check a change first)."""
        overlay = overlay or {}
        chain: list[str] = []
        docs: list[ProfileDocument] = []
        current: str | None = name
        while current is not None:
            if current in chain:
                child = docs[-1]
                raise child.error("extends", f"cycle: {' → '.join([*chain, current])}")
            if len(chain) > MAX_EXTENDS_DEPTH:
                raise docs[0].error(
                    "extends",
                    f"the chain is deeper than {MAX_EXTENDS_DEPTH} levels: {' → '.join([*chain, current])}",
                )
            try:
                doc = overlay[current] if current in overlay else self.load(current)
            except ProfileNotFound:
                if not docs:
                    raise
                raise docs[-1].error(
                    "extends", f"extends {current!r}, which does not exist; available: {', '.join(self.names())}"
                ) from None
            chain.append(current)
            docs.append(doc)
            current = doc.extends
        merged: dict[str, Any] = {}
        for doc in reversed(docs):
            merged = deep_merge(merged, doc.settings)
        try:
            settings = full_settings(merged)
        except ValidationError as exc:  # each document was valid alone: their combination is not
            raise ProfileError(name, f"resolved from {' → '.join(chain)}", validation_problems(exc)) from None
        description = next((d.description for d in docs if d.description), None)
        return ResolvedProfile(
            name=name,
            chain=chain,
            settings=settings,
            hash=config_hash(settings),
            description=description,
            builtin=name in BUILTIN_NAMES,
        )

    def dependents(self, name: str) -> list[str]:
        """User profiles whose `extends` chain passes through `name` (they break if it changes or goes)."""
        found = []
        for other in self.user_names():
            if other == name:
                continue
            seen: set[str] = set()
            current: str | None = other
            while current is not None and current not in seen and len(seen) <= MAX_EXTENDS_DEPTH:
                seen.add(current)
                try:
                    current = self.load(current).extends
                except ProfileError:
                    break
                if current == name:
                    found.append(other)
                    break
        return found

    # -- writing -------------------------------------------------------------------------
    def check_candidate(self, doc: ProfileDocument) -> ResolvedProfile:
        """Resolve `doc` as if it were stored, and every profile that extends it too, without writing."""
        resolved = self.resolve(doc.name, overlay={doc.name: doc})
        for child in self.dependents(doc.name):
            try:
                self.resolve(child, overlay={doc.name: doc})
            except ProfileError as exc:
                raise ProfileError(
                    doc.name, doc.source, [ProfileProblem("", f"the change would break profile {child!r}: {exc}")]
                ) from None
        return resolved

    def create(self, doc: ProfileDocument) -> ResolvedProfile:
        """Store a new user profile; `ProfileConflict` if the name is taken (built-ins included)."""
        self._writable(doc.name)
        if self.exists(doc.name):
            raise ProfileConflict(doc.name, f"profile {doc.name!r} already exists; use PUT to replace it")
        resolved = self.check_candidate(doc)
        self._write(doc, exclusive=True)
        return resolved

    def replace(self, doc: ProfileDocument) -> tuple[ResolvedProfile, bool]:
        """Create or replace a user profile; returns (resolved, created)."""
        self._writable(doc.name)
        created = not self.exists(doc.name)
        resolved = self.check_candidate(doc)
        self._write(doc, exclusive=False)
        return resolved, created

    def delete(self, name: str) -> None:
        self._writable(name)
        if not self.exists(name):
            raise ProfileNotFound(name, self.names())
        if users := self.dependents(name):
            raise ProfileConflict(name, f"profile {name!r} is extended by {', '.join(users)}; change those first")
        self.user_path(name).unlink()

    def _writable(self, name: str) -> None:
        check_name(name)
        if name in BUILTIN_NAMES:
            raise ProfileConflict(name, f"{name!r} is a built-in profile and cannot be changed or deleted")

    def _write(self, doc: ProfileDocument, *, exclusive: bool) -> None:
        """Temp file + rename in the same folder: a reader sees the old or the new file, never half of one.

        `exclusive` publishes with a hard link, which fails if the name appeared meanwhile, so two
        concurrent creates cannot both succeed.
        """
        target = self.user_path(doc.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(doc.data, sort_keys=False, allow_unicode=True, default_flow_style=False)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            if exclusive:
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    raise ProfileConflict(
                        doc.name, f"profile {doc.name!r} already exists; use PUT to replace it"
                    ) from None
            else:
                os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
