"""The `security` section of summary.json: what the attack load sent, what the receiver answered and processed.

Sent and status counts come from the attacker's own records; what the receiver decided (accepted =
processed as new, duplicate = answered but not processed again) comes from its audit log, joined by
the attack label each hostile request carries. Legitimate traffic is every delivery attempt the
producer made.
"""

from __future__ import annotations

from typing import Any

from bench.analysis.tables import Tables

__all__ = ["security_section"]


def security_section(t: Tables, attack_enabled: bool) -> dict[str, Any]:
    attacks, audit = t.attacks, t.arrivals
    hostile_audit = audit[audit["attack"].notna()]
    kinds: dict[str, Any] = {}
    for kind in sorted(set(attacks["kind"]) | set(hostile_audit["attack"])):
        sent = attacks[attacks["kind"] == kind]
        seen = hostile_audit[hostile_audit["attack"] == kind]
        statuses = sent["status"].value_counts().sort_index()
        exp = int(sent["expected_status"].iloc[0]) if len(sent) else None
        kinds[kind] = {
            "sent": int(len(sent)),
            "expected_status": exp,
            "as_expected": int((sent["status"] == exp).sum()) if exp is not None else 0,
            "statuses": {str(k): int(v) for k, v in statuses.items()},
            "accepted": int((seen["verdict"] == "accepted").sum()),  # processed as new: a defence failed
            "deduplicated": int((seen["verdict"] == "duplicate").sum()),
            "audited": int(len(seen)),
        }
    legit_audit = audit[audit["attack"].isna()]
    d = t.deliveries[~(t.deliveries["outcome"].fillna("").eq("abandoned") & t.deliveries["status"].eq(0))]
    legit_ok = d["status"].between(200, 299)
    hostile_sent = int(len(attacks))
    return {
        "attack_enabled": attack_enabled,
        "hostile_sent": hostile_sent,
        "hostile_accepted": int(sum(k["accepted"] for k in kinds.values())),
        "hostile_as_expected": int(sum(k["as_expected"] for k in kinds.values())),
        "receiver_5xx": int(((audit["status"].fillna(0) >= 500) & (audit["verdict"] == "error")).sum()),
        "kinds": kinds,
        "legit": {
            "sent": int(len(d)),
            "answered_2xx": int(legit_ok.sum()),
            "accepted_fraction": float(legit_ok.mean()) if len(d) else None,
        },
        "audit": {
            "rows": int(len(audit)), "hostile_rows": int(len(hostile_audit)), "legit_rows": int(len(legit_audit)),
            # every request either side sent is in the audit log (requests that never got an answer aside)
            "complete": bool(len(hostile_audit) >= int((attacks["status"] > 0).sum())
                             and len(legit_audit) >= int((d["status"] > 0).sum())),
        },
    }
