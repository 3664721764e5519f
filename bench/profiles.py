"""Provider delivery profiles: the delivery keys a provider documents (bench/data/delivery_profiles.toml).

`webhook.profile = "svix"` fills timeout, retry schedule, attempts, disable rule and signing scheme from the
data file; `bench.config` lets any key the scenario sets itself win. Each value in the file carries the page
it was read from, the date, and a status (documented, secondary, derived, assumed, not documented, mapped).
"""

from __future__ import annotations

import tomllib
from datetime import date
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["PROFILE_NAMES", "DELIVERY_KEYS", "INFO_KEYS", "STATUSES", "load_profiles", "profile_values"]

PROFILE_NAMES = ("stripe", "github", "shopify", "slack", "svix", "square", "standard")
# keys of a profile that become delivery keys (bench.config._DELIVERY) ...
DELIVERY_KEYS = ("timeout", "retry_delays", "max_attempts", "backoff_base", "backoff_factor", "backoff_cap",
                 "disable_after_failures", "disable_after", "scheme", "breaker")
# ... and keys kept for the reader only (the span the provider states; a rule in words)
INFO_KEYS = ("retry_window", "disable_rule")
STATUSES = ("documented", "secondary", "derived", "assumed", "not documented", "mapped")
_DATA = "delivery_profiles.toml"


@lru_cache(maxsize=1)
def load_profiles() -> dict[str, dict[str, Any]]:
    """The data file as read (each value a table with value/status/source/read), checked for shape."""
    text = resources.files("bench").joinpath("data", _DATA).read_text(encoding="utf-8")
    data = tomllib.loads(text)
    if tuple(sorted(data)) != tuple(sorted(PROFILE_NAMES)):
        raise ValueError(f"{_DATA}: profiles {sorted(data)}, expected {sorted(PROFILE_NAMES)}")
    for name, table in data.items():
        for key, entry in table.items():
            if key == "name":
                continue
            where = f"{_DATA} [{name}].{key}"
            if key not in DELIVERY_KEYS + INFO_KEYS:
                raise ValueError(f"{where}: unknown key")
            if not isinstance(entry, dict) or not isinstance(entry.get("source"), str) \
                    or not entry["source"].startswith("https://") or not isinstance(entry.get("read"), date):
                raise ValueError(f"{where}: needs source (an https URL) and read (a date)")
            if entry.get("status") not in STATUSES:
                raise ValueError(f"{where}: status must be one of {STATUSES}")
    return data


def profile_values(name: str) -> dict[str, Any]:
    """The delivery keys profile `name` sets (only those with a value), as a scenario file would write them."""
    table = load_profiles()[name]
    return {k: table[k]["value"] for k in DELIVERY_KEYS if k in table and "value" in table[k]}

