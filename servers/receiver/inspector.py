"""The inspector: what arrived lately, as JSON (/inspect.json) and as a small self-contained HTML page (/inspect).
A foreign sender's event (verified JSON that is not a hookbench change event) is marked "(foreign)" beside its verdict.

Entries come from the audit log already redacted; every value is HTML-escaped here, since all of it is request data.
"""

from __future__ import annotations

import datetime
from html import escape
from typing import Any, Mapping

__all__ = ["as_json", "as_html", "CSP"]

# The page shows what senders (and attackers) sent: forbid scripts, frames and every fetch outright.
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
code,pre{font:12px/1.3 ui-monospace,monospace}
pre{margin:0;white-space:pre-wrap;word-break:break-all;max-width:60em}
.accepted{color:#0a6b0a}.duplicate{color:#555}.rejected{color:#a00}.error{color:#b35c00}.forced{color:#5a3fa0}
details summary{cursor:pointer}
"""


def _when(t_ns: int) -> str:
    t = datetime.datetime.fromtimestamp(t_ns / 1e9, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def as_json(entries: list[dict[str, Any]], counts: Mapping[str, int],
            endpoints: list[dict[str, str]]) -> dict[str, Any]:
    """The inspector's JSON: newest request first, each with its time in ISO form beside t_ns."""
    return {"count": len(entries), "counts": dict(counts), "endpoints": endpoints,
            "requests": [{"time": _when(e["t_ns"]), **e} for e in entries]}


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _row(e: dict[str, Any]) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in e["headers"].items())
    body = e.get("body_preview")
    body_html = "<em>not read</em>" if body is None else (
        f"<details><summary>{_e(e.get('body_bytes'))} bytes</summary><pre>{_e(body)}</pre></details>")
    verdict = e["verdict"]
    return (
        "<tr>"
        f"<td><code>{_e(_when(e['t_ns']))}</code></td>"
        f"<td>{_e(e['method'])} <code>{_e(e['path'])}</code><br><small>from {_e(e['remote'])}"
        f"{' to ' + _e(e['endpoint']) if e.get('endpoint') else ''}</small></td>"
        f"<td>{_e(e['status'] if e['status'] is not None else 'no answer')}</td>"
        f'<td class="{_e(verdict)}">{_e(verdict)}{" (foreign)" if e.get("foreign") else ""}</td>'
        f"<td>{_e(e.get('reason') or '')}"
        f"{'<br><small>id ' + _e(e['msg_id']) + '</small>' if e.get('msg_id') else ''}"
        f"{'<br><small>change ' + _e(e['change_id']) + '</small>' if e.get('change_id') else ''}</td>"
        f"<td><details><summary>{len(e['headers'])} headers</summary><pre>{_e(headers)}</pre></details></td>"
        f"<td>{body_html}</td>"
        "</tr>"
    )


def as_html(entries: list[dict[str, Any]], counts: Mapping[str, int], endpoints: list[dict[str, str]],
            keep: int) -> str:
    """A page listing the last `keep` requests, newest first; every value escaped."""
    tally = ", ".join(f"{_e(k)}: {_e(v)}" for k, v in sorted(counts.items())) or "none yet"
    eps = "".join(f"<li><code>{_e(ep['url_path'])}</code> ({_e(ep['name'])}, {_e(ep['scheme'])})</li>"
                  for ep in endpoints)
    rows = "".join(_row(e) for e in entries) or '<tr><td colspan="7">No request yet.</td></tr>'
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>hookbench receiver: inspector</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>hookbench receiver</h1>"
        f"<p>Requests so far by verdict: {tally}. Showing the last {len(entries)} (keeps {_e(keep)}), newest first. "
        "Reload to refresh; <a href=\"inspect.json\">as JSON</a>.</p>"
        f"<p>Endpoints:</p><ul>{eps}</ul>"
        "<table><thead><tr><th>time (UTC)</th><th>request</th><th>status</th><th>verdict</th><th>reason</th>"
        f"<th>headers</th><th>body</th></tr></thead><tbody>{rows}</tbody></table>"
        "</body></html>"
    )
