"""Redaction of secrets from everything AgentGate persists.

An agent can print any value it can read, and its output ends up in logs, events and artifacts
that outlive the run and are shown to people. Two nets: the *known values* (the secrets a phase was
given, the worker's configured tokens) matched exactly, and *token formats* (GitHub, Anthropic,
OpenAI, AWS, Slack, private keys, credentials in URLs) matched by shape, which also catches
secrets AgentGate never knew about (for example one the agent found in the repository).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 8  # shorter "secrets" would blank out ordinary words; they are reported, not matched

# (pattern, keep_group): keep_group is a group whose text stays (a label like "Authorization: Bearer ").
_FORMATS: list[tuple[str, int | None]] = [
    (r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----", None),
    (r"\bgh[pousr]_[A-Za-z0-9]{30,255}", None),
    (r"\bgithub_pat_[A-Za-z0-9_]{22,255}", None),
    (r"\bsk-ant-[A-Za-z0-9_\-]{16,}", None),
    (r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}", None),
    (r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b", None),
    (r"(?i)(aws_secret_access_key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9/+=]{40}", 1),
    (r"\bxox[abposrce]-[A-Za-z0-9-]{10,}", None),
    (r"\bxapp-[0-9]-[A-Za-z0-9-]{10,}", None),
    (r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+", None),
    (r"\bAIza[0-9A-Za-z_\-]{35}", None),
    (r"\bglpat-[A-Za-z0-9_\-]{20,}", None),
    (r"\bnpm_[A-Za-z0-9]{36}\b", None),
    (r"\bpypi-[A-Za-z0-9_\-]{50,}", None),
    (r"(?i)\b((?:proxy-)?authorization\s*[:=]\s*[\"']?(?:bearer|token|basic)\s+)[A-Za-z0-9._~+/=\-]{12,}", 1),
    (r"(?i)(x-api-key\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=\-]{12,}", 1),
    # user:password@ in any URL: keep scheme and host so the log still says where it went.
    (r"\b([A-Za-z][A-Za-z0-9+.\-]{1,20}://)[^\s/@:\"'<>]+:[^\s/@\"'<>]+(?=@)", 1),
]
_KEY_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_KEY_END = re.compile(r"-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")


def _compile(known: list[str], as_bytes: bool) -> list[tuple[re.Pattern, int | None]]:
    out: list[tuple[re.Pattern, int | None]] = []
    if known:
        alternation = "|".join(re.escape(v) for v in sorted(known, key=len, reverse=True))
        out.append((re.compile(alternation.encode() if as_bytes else alternation), None))
    for pattern, keep in _FORMATS:
        out.append((re.compile(pattern.encode() if as_bytes else pattern, re.S), keep))
    return out


@dataclass
class Redactor:
    """Replaces known secret values and token formats with `[REDACTED]`, on str and bytes alike."""

    values: Iterable[str] = ()
    formats: bool = True
    ignored: list[str] = field(default_factory=list, init=False)
    count: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        known: list[str] = []
        for value in self.values:
            if not value:
                continue
            value = str(value)
            if len(value) < MIN_SECRET_LENGTH:
                self.ignored.append(f"a value of {len(value)} characters (shorter than {MIN_SECRET_LENGTH})")
                continue
            known.append(value)
            stripped = value.strip()
            if stripped != value and len(stripped) >= MIN_SECRET_LENGTH:
                known.append(stripped)
        self.known = sorted(set(known), key=len, reverse=True)
        self._str = _compile(self.known, as_bytes=False)
        self._bytes = _compile(self.known, as_bytes=True)
        if not self.formats:
            self._str, self._bytes = self._str[: 1 if self.known else 0], self._bytes[: 1 if self.known else 0]

    @classmethod
    def from_env(
        cls, names: Iterable[str], environ: Mapping[str, str] | None = None, extra_values: Iterable[str] = ()
    ) -> Redactor:
        """The usual construction: the policy's secret names (plus configured tokens) looked up in the worker env."""
        environ = os.environ if environ is None else environ
        return cls(values=[*(environ[n] for n in names if environ.get(n)), *extra_values])

    def redact(self, text: str) -> str:
        for pattern, keep in self._str:
            text = pattern.sub(self._replacer(keep, REDACTED), text)
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        marker = REDACTED.encode()
        for pattern, keep in self._bytes:
            data = pattern.sub(self._replacer(keep, marker), data)
        return data

    def __call__(self, value: Any) -> Any:
        if isinstance(value, bytes):
            return self.redact_bytes(value)
        if isinstance(value, str):
            return self.redact(value)
        return self.redact_obj(value)

    def redact_obj(self, value: Any) -> Any:
        """Deep copy of JSON-like data (dict/list/str) with every string redacted; keys included."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, bytes):
            return self.redact_bytes(value)
        if isinstance(value, Mapping):
            return {self.redact(k) if isinstance(k, str) else k: self.redact_obj(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.redact_obj(v) for v in value)
        return value

    def _replacer(self, keep: int | None, marker):
        def sub(match: re.Match) -> Any:
            self.count += 1
            return match.group(keep) + marker if keep else marker

        return sub

    def lines(self) -> LineRedactor:
        return LineRedactor(self)

    def stream(self) -> ChunkRedactor:
        return ChunkRedactor(self)

    def redact_lines(self, lines: Iterable[str]) -> Iterator[str]:
        """Streaming over an iterable of lines, private-key blocks spanning lines included."""
        state = self.lines()
        for line in lines:
            yield state.feed(line)

    def redact_file(self, path: str | Path) -> bool:
        """Rewrite a file in place (streamed, atomic rename); True if anything was replaced."""
        path = Path(path)
        before = self.count
        fd, tmp = tempfile.mkstemp(prefix=".redact-", dir=str(path.parent))
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                chunks = self.stream()
                while block := src.read(1 << 20):
                    out.write(chunks.feed(block))
                out.write(chunks.flush())
            if self.count == before:
                os.unlink(tmp)
                return False
            os.chmod(tmp, path.stat().st_mode & 0o7777)
            os.replace(tmp, path)
            return True
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def find_in_tree(self, root: str | Path, max_file_bytes: int = 16 << 20) -> list[str]:
        """Files under `root` holding a known secret value: a secret must never land in the workspace."""
        if not self.known:
            return []
        needles = [v.encode() for v in self.known]
        hits: list[str] = []
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                full = os.path.join(dirpath, name)
                try:
                    if os.path.islink(full) or os.path.getsize(full) > max_file_bytes:
                        continue
                    with open(full, "rb") as fh:
                        data = fh.read()
                except OSError:
                    continue
                if any(n in data for n in needles):
                    hits.append(os.path.relpath(full, root))
        return sorted(hits)


@dataclass
class LineRedactor:
    """Line-at-a-time redaction that remembers an open private-key block across lines."""

    redactor: Redactor
    in_key: bool = False

    def feed(self, line: str | bytes) -> Any:
        as_bytes = isinstance(line, bytes)
        text = line.decode("utf-8", "surrogateescape") if as_bytes else line
        out = self._feed(text)
        return out.encode("utf-8", "surrogateescape") if as_bytes else out

    def _feed(self, text: str) -> str:
        if self.in_key:
            end = _KEY_END.search(text)
            if end is None:
                return REDACTED + ("\n" if text.endswith("\n") else "")
            self.in_key = False
            self.redactor.count += 1
            return REDACTED + self.redactor.redact(text[end.end() :])
        text = self.redactor.redact(text)  # complete blocks on one line are handled here
        begin = _KEY_BEGIN.search(text)
        if begin is not None:
            self.in_key = True
            return text[: begin.start()] + REDACTED + ("\n" if text.endswith("\n") else "")
        return text


class ChunkRedactor:
    """Redaction over arbitrary byte chunks: whole lines only, so no secret is split at a chunk border."""

    MAX_PENDING = 1 << 20

    def __init__(self, redactor: Redactor) -> None:
        self.lines = LineRedactor(redactor)
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        self.pending += chunk
        cut = self.pending.rfind(b"\n") + 1
        if cut == 0 and len(self.pending) > self.MAX_PENDING:
            # One enormous line: cut at whitespace well before the end, where no token can straddle.
            cut = max(self.pending.rfind(b" ", 0, len(self.pending) - 8192), 0) + 1
            if cut == 1:
                cut = len(self.pending) - 8192
        if cut <= 0:
            return b""
        ready, self.pending = self.pending[:cut], self.pending[cut:]
        return b"".join(self.lines.feed(line) for line in ready.splitlines(keepends=True))

    def flush(self) -> bytes:
        rest, self.pending = self.pending, b""
        return self.lines.feed(rest) if rest else b""
