"""The `security` section of summary.json: what the attack load sent, what the receiver answered and processed.

Sent and status counts come from the attacker's own records; what the receiver decided (accepted =
processed as new, duplicate = answered but not processed again) comes from its audit log, joined by
the attack label each hostile request carries. Legitimate traffic is every delivery attempt the
producer made. A foreign sender's events (verified JSON that is not a hookbench change event) are neither: they
are counted apart, in `foreign`, and never as legitimate deliveries, observations or losses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.analysis.tables import Tables, is_foreign

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["security_section", "foreign_counts"]


def foreign_counts(mine: pd.DataFrame) -> dict[str, Any]:
    """Of a foreign sender's arrivals (`mine`): accepted (processed as new) and duplicates, in all and per endpoint."""
    by_endpoint = {str(ep): {"accepted": int((rows["verdict"] == "accepted").sum()),
                             "duplicates": int((rows["verdict"] == "duplicate").sum())}
                   for ep, rows in mine.groupby(mine["endpoint"].fillna(""), sort=True)}
    return {"accepted": int((mine["verdict"] == "accepted").sum()),
            "duplicates": int((mine["verdict"] == "duplicate").sum()),
            "endpoints": by_endpoint}


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
    foreign = is_foreign(audit)
    legit_audit = audit[audit["attack"].isna() & ~foreign]
    foreign_audit = audit[audit["attack"].isna() & foreign]
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
        "foreign": foreign_counts(foreign_audit),
        "audit": {
            "rows": int(len(audit)), "hostile_rows": int(len(hostile_audit)), "legit_rows": int(len(legit_audit)),
            "foreign_rows": int(len(foreign_audit)),
            # every request either side sent is in the audit log (requests that never got an answer aside)
            "complete": bool(len(hostile_audit) >= int((attacks["status"] > 0).sum())
                             and len(legit_audit) >= int((d["status"] > 0).sum())),
        },
    }
