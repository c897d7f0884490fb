"""Redaction of secrets from everything AgentGate persists.

An agent can print any value it can read, and its output ends up in logs, events and artifacts
that outlive the run and are shown to people. Two nets: the *known values* (the secrets a phase was
given, the worker's configured tokens) matched exactly, and *token formats* (GitHub, Anthropic,
OpenAI, AWS, Slack, private keys, credentials in URLs) matched by shape, which also catches
secrets AgentGate never knew about (for example one the agent found in the repository).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 8  # shorter "secrets" would blank out ordinary words; they are reported, not matched

# Worker variables whose values are secrets by their name alone (tokens, keys, passwords); their values are
# redacted from every artifact even when no work order declared them, because an agent may find them anyway.
SECRET_NAME = re.compile(r"(?i)(TOKEN|SECRET|PASSW(OR)?D|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL|_PAT$)")


@dataclass(frozen=True)
class _Format:
    """A token shape, and the literal markers without which it cannot match.

    Scanning for a marker with `in` runs at memchr speed; only a text holding one pays for
    the regular expression. That keeps redaction of every streamed log line cheap.
    """

    pattern: str
    markers: tuple[str, ...]
    keep: int | None = None  # a group whose text stays (a label like "Authorization: Bearer ")
    fold: bool = False  # markers are searched in the lower-cased text
    also: str | None = None  # a second marker that must be present as well


_FORMATS: list[_Format] = [
    _Format(
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----",
        ("PRIVATE KEY",),
    ),
    _Format(r"\bgh[pousr]_[A-Za-z0-9]{30,255}", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    _Format(r"\bgithub_pat_[A-Za-z0-9_]{22,255}", ("github_pat_",)),
    _Format(r"\bsk-ant-[A-Za-z0-9_\-]{16,}", ("sk-ant-",)),
    _Format(r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}", ("sk-",)),
    _Format(
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
        ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"),
    ),
    _Format(
        r"(?i)(aws_secret_access_key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9/+=]{40}",
        ("aws_secret_access_key",),
        keep=1,
        fold=True,
    ),
    _Format(r"\bxox[abposrce]-[A-Za-z0-9-]{10,}", ("xox",)),
    _Format(r"\bxapp-[0-9]-[A-Za-z0-9-]{10,}", ("xapp-",)),
    _Format(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+", ("hooks.slack.com",)),
    _Format(r"\bAIza[0-9A-Za-z_\-]{35}", ("AIza",)),
    _Format(r"\bglpat-[A-Za-z0-9_\-]{20,}", ("glpat-",)),
    _Format(r"\bnpm_[A-Za-z0-9]{36}\b", ("npm_",)),
    _Format(r"\bpypi-[A-Za-z0-9_\-]{50,}", ("pypi-",)),
    _Format(
        r"(?i)\b((?:proxy-)?authorization\s*[:=]\s*[\"']?(?:bearer|token|basic)\s+)[A-Za-z0-9._~+/=\-]{12,}",
        ("authorization",),
        keep=1,
        fold=True,
    ),
    _Format(r"(?i)(x-api-key\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=\-]{12,}", ("x-api-key",), keep=1, fold=True),
    # user:password@ in any URL: keep scheme and host so the log still says where it went. Starting at the
    # literal "://" lets the regex engine jump from one URL to the next instead of trying every position.
    _Format(r"(://)[^\s/@:\"'<>]+:[^\s/@\"'<>]+(?=@)", ("://",), keep=1, also="@"),
]
_KEY_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_KEY_END = re.compile(r"-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern
    markers: tuple
    keep: int | None
    fold: bool
    also: Any


def _compile(known: list[str], as_bytes: bool, formats: bool) -> list[_Rule]:
    def enc(value: str) -> Any:
        return value.encode("utf-8", "surrogateescape") if as_bytes else value

    out: list[_Rule] = []
    if known:
        alternation = "|".join(re.escape(v) for v in known)
        out.append(_Rule(re.compile(enc(alternation)), tuple(enc(v) for v in known), None, False, None))
    if formats:
        for f in _FORMATS:
            markers = tuple(enc(m) for m in f.markers)
            also = enc(f.also) if f.also is not None else None
            out.append(_Rule(re.compile(enc(f.pattern), re.S), markers, f.keep, f.fold, also))
    return out


def _variants(value: str) -> list[str]:
    """The value as written raw and as it appears inside a JSON string (escaped quotes, backslashes, unicode)."""
    forms = [value, value.strip(), json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]]
    return [f for f in dict.fromkeys(forms) if len(f) >= MIN_SECRET_LENGTH]


def secret_env_values(names: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    """The values to redact on this worker: every variable named like a secret, plus the `names` declared secret."""
    environ = os.environ if environ is None else environ
    wanted = set(names)
    return [v for k, v in environ.items() if v and (k in wanted or SECRET_NAME.search(k))]


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
            known.extend(_variants(value))
        self.known = sorted(set(known), key=len, reverse=True)
        self._str = _compile(self.known, as_bytes=False, formats=self.formats)
        self._bytes = _compile(self.known, as_bytes=True, formats=self.formats)

    @classmethod
    def from_env(
        cls, names: Iterable[str], environ: Mapping[str, str] | None = None, extra_values: Iterable[str] = ()
    ) -> Redactor:
        """The usual construction: the policy's secret names (plus configured tokens) looked up in the worker env."""
        environ = os.environ if environ is None else environ
        return cls(values=[*(environ[n] for n in names if environ.get(n)), *extra_values])

    def redact(self, text: str) -> str:
        return self._apply(text, self._str, REDACTED)

    def redact_bytes(self, data: bytes) -> bytes:
        return self._apply(data, self._bytes, REDACTED.encode())

    def _apply(self, data: Any, rules: list[_Rule], marker: Any) -> Any:
        folded = None
        for rule in rules:
            hay = data
            if rule.fold:
                if folded is None:
                    folded = data.lower()
                hay = folded
            if not any(m in hay for m in rule.markers) or (rule.also is not None and rule.also not in hay):
                continue
            before = self.count
            data = rule.regex.sub(self._replacer(rule.keep, marker), data)
            if self.count != before:
                folded = None
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
    """Redaction of whole lines (one or many at a time) that remembers an open private-key block across calls."""

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
            return REDACTED + self._feed(text[end.end() :])  # the rest may open another block
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
        # All complete lines at once: a secret never spans a newline, and one pass over a block is
        # much cheaper than one per line.
        return self.lines.feed(ready)

    def flush(self) -> bytes:
        rest, self.pending = self.pending, b""
        return self.lines.feed(rest) if rest else b""
