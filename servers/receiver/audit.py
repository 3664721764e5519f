"""The audit log: one row per request in audit.jsonl (the analysis's table of arrivals) and the inspector's recent ones.
Secrets reach neither: tokens become `<token>`; Authorization, secret-looking headers and known secrets are redacted."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from bench.protocol import ATTACK_LABEL_HEADER, H_ID, H_TIMESTAMP
from bench.records import JsonlWriter

__all__ = ["Arrival", "AuditLog", "Redactor", "VERDICTS", "AUDIT_FILE", "BODY_PREVIEW_BYTES", "audit_headers"]

AUDIT_FILE = "audit.jsonl"
VERDICTS = ("accepted", "duplicate", "rejected", "error", "forced")
BODY_PREVIEW_BYTES = 512
MAX_VALUE_CHARS = 256  # a logged header value or path is cut here: request data must not bloat the log
REDACTED = "<redacted>"

# Headers kept in audit.jsonl: what was sent, by what, and each scheme's id / timestamp (never a signature).
_AUDIT_HEADERS = ("content-type", "content-length", "user-agent", H_ID, H_TIMESTAMP, "x-github-delivery",
                  "x-github-event", ATTACK_LABEL_HEADER)
_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
_SECRET_WORDS = ("secret", "token", "password", "passwd", "api-key", "apikey", "session")


@dataclass
class Arrival:
    """What the pipeline learnt about one request; the handler fills it in as the checks run."""

    t_ns: int
    method: str
    path: str  # already redacted
    remote: str | None
    headers: Mapping[str, str]  # as received (redacted when stored)
    endpoint: str | None = None
    t_obs_ns: int | None = None
    body: bytes | None = None
    msg_id: str | None = None
    change_id: str | None = None  # set for hookbench's own change events only
    # True: a verified JSON body that is not a hookbench change event (a foreign sender's); False: one of ours;
    # None: the request stopped before its body was classified
    foreign: bool | None = None
    status: int | None = None
    verdict: str = "error"
    reason: str | None = None
    latency_ms: float | None = None


def _cut(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class Redactor:
    """Removes the configured secrets (and secret-looking headers) from text before it is logged or shown."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # longest first, so a secret containing another is cut whole
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for s in self._secrets:
            if s in value:
                value = value.replace(s, REDACTED)
        return value

    def header(self, name: str, value: str) -> str:
        lower = name.lower()
        if lower in _SECRET_HEADERS or any(w in lower for w in _SECRET_WORDS):
            scheme, _, rest = value.partition(" ")
            return f"{scheme} {REDACTED}" if rest and lower.endswith("authorization") else REDACTED
        return self.text(value)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Every header, secrets redacted; a repeated header's values are joined with ', '."""
        out: dict[str, str] = {}
        for name, value in headers.items():
            v = _cut(self.header(name, value))
            key = name.lower()
            out[key] = f"{out[key]}, {v}" if key in out else v
        return out


def audit_headers(headers: Mapping[str, str], redactor: Redactor) -> dict[str, str]:
    """The selected headers of audit.jsonl (absent ones left out); Stripe-Signature reduced to its timestamp."""
    out = {}
    for name in _AUDIT_HEADERS:
        value = headers.get(name)
        if value is not None:
            out[name] = _cut(redactor.text(value))
    stripe = headers.get("stripe-signature")
    if stripe is not None:
        ts = [item for item in stripe.split(",") if item.startswith("t=")]
        out["stripe-signature"] = _cut(",".join(ts))  # the v1 signatures are left out
    return out


class AuditLog:
    """Writes audit.jsonl (once opened on a records directory), counts verdicts, keeps the last N for /inspect.

    The inspector's entries are redacted when /inspect asks for them, not per request: it keeps the row, the
    request's (immutable) headers and the first BODY_PREVIEW_BYTES of the body, and redacts them then.
    """

    def __init__(self, inspect_last: int, redactor: Redactor) -> None:
        self.redactor = redactor
        self.counts: Counter[str] = Counter()
        self.recent: deque[tuple[dict[str, Any], Mapping[str, str], bytes | None, int | None]] = \
            deque(maxlen=max(inspect_last, 0))
        self._inspect = inspect_last > 0
        self._writer: JsonlWriter | None = None

    def open(self, records_dir: Path) -> None:
        self._writer = JsonlWriter(records_dir / AUDIT_FILE)

    def record(self, a: Arrival) -> None:
        self.counts[a.verdict] += 1
        r = self.redactor
        msg_id, change_id, reason = a.msg_id, a.change_id, a.reason
        row = {"t_ns": a.t_ns, "t_obs_ns": a.t_obs_ns, "endpoint": a.endpoint, "remote": a.remote,
               "method": a.method, "path": a.path, "headers": audit_headers(a.headers, r),
               "msg_id": None if msg_id is None else _cut(r.text(msg_id)),
               "change_id": None if change_id is None else _cut(r.text(change_id)), "foreign": a.foreign,
               "status": a.status, "verdict": a.verdict,
               "reason": None if reason is None else _cut(r.text(reason), 512),
               "latency_ms": a.latency_ms}
        if self._writer is not None:
            self._writer.write(row)
        if self._inspect:
            body = a.body
            self.recent.append((row, a.headers, None if body is None else body[:BODY_PREVIEW_BYTES],
                                None if body is None else len(body)))

    def flush_due(self) -> None:
        """Flush audit.jsonl if rows wait in the buffer (a timer calls this: a quiet spell still reaches the disk)."""
        if self._writer is not None:
            self._writer.flush_due()

    def newest_first(self) -> list[dict[str, Any]]:
        """The inspector's entries, newest first: every header (secrets redacted) and the body's start."""
        r = self.redactor
        return [{**row, "headers": r.headers(headers),
                 "body_preview": None if preview is None else r.text(preview.decode("utf-8", errors="replace")),
                 "body_bytes": size}
                for row, headers, preview, size in reversed(self.recent)]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
