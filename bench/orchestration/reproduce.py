"""`hookbench reproduce zapier|all`: the reproductions of the claims, each a set of runs and one summary.

zapier (C1 "98.5% of polls are wasted", C2 "66x the load", C3 "webhooks arrive without delay"):
  1. live -- a time-scaled `hookbench run` of scenarios/zapier_live.toml (real servers, Locust pollers,
     webhook receiver) at lambda*T = 0.0155 per subscription;
  2. population -- a simulated fleet with Zapier's interval mix, calibrated to 30M polls / 460k useful;
  3. load -- requests, producer CPU and bytes per change, polling vs webhooks, from the live run;
  4. latency -- polling's detection latency at each Zapier interval (simulated) vs the webhook's (live);
  5. sensitivity -- the required change interval per interval mix and spread, and a heatmap grid of the
     simulated wasted fraction over poll interval x change rate.
all: zapier, then the overload (C4), crossover (C5), loss (C6), security (C7) and every-mode (C8) runs and the
outage model (C9, virtual time, seconds), into one claims page.

Writes the reproduction directory (summary.json with a `claims` section, manifest.json, Parquet tables); the
reports package turns it into report.md/html. summary.json is rewritten after every part, so an interrupted
reproduction keeps the parts it finished (`partial: true`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from bench.analysis import claims as cl
from bench.analysis.readings import live_latency, live_part, load_part
from bench.config import load_scenario
from bench.errors import RunError
from bench.manifest import collect_metadata
from bench.orchestration.runner import run_scenario
from bench.orchestration.session import new_run_dir
from bench.results import (
    Kind,
    RunStatus,
    Summary,
    manifest_keys,
    read_summary,
    read_sweep,
    status_keys,
    version_keys,
    write_manifest,
    write_summary,
)
from bench.simulation.calibrate import (
    SENSITIVITY_MIXES,
    ZAPIER,
    ZAPIER_MIX,
    heatmap_grid,
    reproduce_fleet,
    sensitivity_table,
)
from bench.simulation.outage import DEFAULT_CHANGES, write_outage_run

__all__ = ["reproduce_zapier", "reproduce_all", "Interrupted", "ZAPIER_INTERVALS_S"]

ZAPIER_INTERVALS_S = (60.0, 120.0, 900.0)  # Team/Enterprise 1 min, Professional 2 min, Free 15 min
LIVE_SCENARIO = "zapier_live.toml"


class Interrupted(Exception):
    """Ctrl-C during a reproduction: what finished is written, the rest is marked not run."""


@dataclass(frozen=True)
class Sizes:
    """How big each part is: the full reproduction, or a quick one for tests and notebooks."""

    live_overrides: tuple[str, ...]
    period_s: float  # of the simulated fleet
    polls: int
    useful_polls: int
    heat_cells: int
    heat_polls: int

    @staticmethod
    def of(quick: bool) -> "Sizes":
        if quick:  # the claim's ratio 460k/30M at 1/100 the scale; a 6 s live window of 50 pollers. The period
            # is a whole number of every interval, so each subscription's poll count is exact, as in the full day
            return Sizes(("run.duration=6s", "run.warmup=2s", "run.drain=2s", "resources.count=50"),
                         3600.0, 300_000, 4_600, 6, 20_000)
        return Sizes((), 86_400.0, ZAPIER["polls"], ZAPIER["useful_polls"], 12, 200_000)


def _say(log: Callable[[str], None], t0: float, text: str) -> None:
    log(f"[{time.monotonic() - t0:6.1f}s] {text}")


def reproduce_zapier(out: Path, *, repo: Path, scenarios_dir: Path, quick: bool = False, seed: int = 1,
                     log: Callable[[str], None] = print) -> Path:
    """Run the five parts into a new directory under `out`; returns it. Raises Interrupted on Ctrl-C (after
    writing what finished) and RunError when the live run fails."""
    sizes = Sizes.of(quick)
    rdir = new_run_dir(out, "reproduce-zapier")
    t0 = time.monotonic()
    summary: dict[str, Any] = {**version_keys(Kind.REPRODUCTION), "reproduction": "zapier", "quick": quick,
                               **status_keys(RunStatus.PARTIAL), "parts_done": [], "claim_source": dict(ZAPIER),
                               "claimed_wasted_fraction": cl.CLAIMED_WASTED}
    manifest = {**manifest_keys(Kind.REPRODUCTION), "reproduction": "zapier",
                "quick": quick, "seed": seed, "sizes": sizes.__dict__, "live_scenario": LIVE_SCENARIO,
                "zapier_mix": [list(m) for m in ZAPIER_MIX], **collect_metadata(repo)}
    write_manifest(rdir, manifest)

    def save() -> None:
        write_summary(rdir, summary)

    save()
    try:
        # 1. live
        scenario = load_scenario(scenarios_dir / LIVE_SCENARIO, list(sizes.live_overrides) + [f"seed={seed}"])
        _say(log, t0, f"1/5 live run: {scenario.description}")
        (rdir / "live").mkdir()
        result = run_scenario(scenario, rdir / "live", scenarios_dir, repo=repo, log=lambda m: log("      " + m))
        live_dir = result.run_dir.relative_to(rdir).as_posix()
        summary["live_run"] = live_dir
        if result.status is RunStatus.INTERRUPTED:
            raise KeyboardInterrupt
        if result.status is not RunStatus.COMPLETE:
            raise RunError(f"the live run failed: {result.error} (see {result.run_dir})")
        s = result.summary
        summary["live"] = live_part(s)
        summary["load"] = load_part(s)
        lat = live_latency(s)
        summary["parts_done"].append("live")
        save()
        lv = summary["live"]
        _say(log, t0, f"    {lv['wasted_fraction']:.2%} of {lv['polls']:,} polls empty (95% CI "
                      f"{lv['wasted_ci95'][0]:.2%}-{lv['wasted_ci95'][1]:.2%}); "
                      f"model {lv['model_wasted_fraction']:.2%}")

        # 2. population
        _say(log, t0, f"2/5 population: calibrating and simulating a fleet to {sizes.polls:,} polls / "
                      f"{sizes.useful_polls:,} useful over {sizes.period_s / 3600:g} h")
        fleet = reproduce_fleet(ZAPIER_MIX, seed=seed, period=sizes.period_s, polls=sizes.polls,
                                useful_polls=sizes.useful_polls)
        pop = fleet.to_dict()
        summary["population"] = {"calibration": pop["calibration"], "simulated": pop["simulated"],
                                 "check": pop["check"], "wasted_fraction": pop["simulated"]["wasted_fraction"],
                                 "polls": pop["simulated"]["polls"],
                                 "median_change_interval_s": pop["calibration"]["median_change_interval_s"]}
        fleet.result.subscriptions.to_parquet(rdir / "population_subscriptions.parquet", index=False)
        pd.DataFrame(pop["simulated"]["intervals"]).to_parquet(rdir / "population_intervals.parquet", index=False)
        summary["parts_done"].append("population")
        save()
        p = summary["population"]
        _say(log, t0, f"    simulated {p['polls']:,} polls: {p['wasted_fraction']:.3%} empty; the median "
                      f"subscription changes every {p['median_change_interval_s'] / 3600:.1f} h")

        # 3. load (from the live run)
        _say(log, t0, "3/5 load: polling vs webhooks per change, from the live run")
        ld = summary["load"]
        _say(log, t0, "    requests " + _x(ld["requests_ratio"]) + ", producer CPU " + _x(ld["cpu_ratio"])
             + ", bytes " + _x(ld["bytes_ratio"]))
        summary["parts_done"].append("load")

        # 4. latency
        _say(log, t0, "4/5 latency: polling at each Zapier interval (simulated) vs webhooks (live)")
        lat["polling_by_interval"] = _latency_by_interval(fleet.result.summary)
        summary["latency"] = lat
        pd.DataFrame(lat["polling_by_interval"]).to_parquet(rdir / "latency_by_interval.parquet", index=False)
        summary["parts_done"].append("latency")
        save()

        # 5. sensitivity
        _say(log, t0, f"5/5 sensitivity: required change interval per mix and spread; a {sizes.heat_cells}x"
                      f"{sizes.heat_cells} heatmap grid, simulated")
        table = sensitivity_table(SENSITIVITY_MIXES)
        pd.DataFrame(table).to_parquet(rdir / "sensitivity.parquet", index=False)
        grid = heatmap_grid(_geom(10.0, 3600.0, sizes.heat_cells), _geom(1e-6, 1e-1, sizes.heat_cells),
                            polls_per_cell=sizes.heat_polls, seed=seed)
        _grid_frame(grid).to_parquet(rdir / "heatmap.parquet", index=False)
        summary["sensitivity"] = {"table": table, "heatmap": grid}
        summary["parts_done"].append("sensitivity")
    except KeyboardInterrupt:
        summary["claims"] = _zapier_claims(summary)
        summary.update(status_keys(RunStatus.INTERRUPTED))
        save()
        raise Interrupted(str(rdir)) from None
    summary["claims"] = _zapier_claims(summary)
    summary.update(status_keys(RunStatus.COMPLETE))
    summary["wall_s"] = time.monotonic() - t0
    save()
    _say(log, t0, "done")
    return rdir


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1f}x"


def _geom(lo: float, hi: float, n: int) -> list[float]:
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


def _latency_by_interval(fleet_summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in fleet_summary.get("intervals") or []:
        if c["interval_s"] in ZAPIER_INTERVALS_S and c.get("latency_mean_ms") is not None:
            rows.append({"interval_s": c["interval_s"], "mean_s": c["latency_mean_ms"] / 1e3,
                         "model_mean_s": c["model_latency_mean_ms"] / 1e3, "changes": c["changes"],
                         "source": "simulated (virtual time)"})
    return rows


def _grid_frame(grid: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for i, lam in enumerate(grid["rates"]):
        for j, T in enumerate(grid["intervals_s"]):
            rows.append({"rate": lam, "interval_s": T, "lambda_T": lam * T,
                         "wasted_fraction": grid["wasted_fraction"][i][j],
                         "ci95_low": grid["wasted_fraction_ci95_low"][i][j],
                         "ci95_high": grid["wasted_fraction_ci95_high"][i][j], "polls": grid["polls"][i][j],
                         "model_wasted_fraction": grid["model_wasted_fraction"][i][j]})
    return pd.DataFrame(rows)


def _zapier_claims(s: dict[str, Any]) -> dict[str, Any]:
    runs = [s["live_run"]] if s.get("live_run") else []
    out = {}
    out["C1"] = (cl.c1_wasted(s["live"], s.get("population"), runs) if "live" in s
                 else cl.not_run("C1", "the live run did not finish"))
    out["C2"] = cl.c2_load(s["load"], runs) if "load" in s else cl.not_run("C2", "the live run did not finish")
    out["C3"] = (cl.c3_latency(s["latency"], runs) if "latency" in s
                 else cl.not_run("C3", "the latency part did not finish"))
    return out


# --- all ------------------------------------------------------------------------------------------------

OTHER_RUNS = (  # claim, kind, scenario, extra
    ("C4", "load", "overload_receiver.toml"),
    ("C5", "sweep", "crossover.toml"),
    ("C6", "run", "faults/receiver_outage.toml"),
    ("C6", "run", "faults/producer_crash.toml"),
    ("C7", "run", "security/attack_mix.toml"),
    ("C8", "run", "all_modes.toml"),
    ("C9", "outage", "outage (model)"),  # `hookbench outage`: virtual time, a few seconds
)
OUTAGE_CHANGES_QUICK = 300  # outage-time changes per point with --quick (the full page draws DEFAULT_CHANGES)
CROSSOVER_GRID = [("changes.rate", ["0.002", "0.01", "0.05", "0.25", "1"])]


def reproduce_all(out: Path, *, repo: Path, scenarios_dir: Path, run_load: Callable[..., Any] | None = None,
                  only: tuple[str, ...] = tuple(cl.CLAIMS), quick: bool = False,
                  log: Callable[[str], None] = print) -> Path:
    """The Zapier reproduction and every other claim's run, then `summary.json` in a new directory under `out`.
    `run_load` is bench.orchestration.load.run_load (the CLI passes it in). `only` limits the claims reproduced;
    the others are listed as not run."""
    from bench.orchestration.sweep import run_sweep

    cdir = new_run_dir(out, "claims")
    write_manifest(cdir, {**manifest_keys(Kind.CLAIMS), "only": list(only), "quick": quick,
                          **collect_metadata(repo)})
    entries: dict[str, dict[str, Any]] = {cid: cl.not_run(cid, "not asked for (--only)") for cid in cl.CLAIMS}
    doc: dict[str, Any] = {**version_keys(Kind.CLAIMS), **status_keys(RunStatus.PARTIAL), "claims": entries,
                           "runs": {}}

    def save() -> None:
        write_summary(cdir, doc)

    save()
    faults: dict[str, Summary] = {}
    try:
        if {"C1", "C2", "C3"} & set(only):
            log("== C1, C2, C3: hookbench reproduce zapier")
            z = reproduce_zapier(cdir, repo=repo, scenarios_dir=scenarios_dir, quick=quick, log=log)
            zs = read_summary(z, expect=Kind.REPRODUCTION)
            doc["runs"]["zapier"] = z.name
            entries.update({k: _rebase(v, z.name) for k, v in (zs.claims or {}).items() if k in only})
            save()
        for cid, kind, name in OTHER_RUNS:
            if cid not in only:
                continue
            path = scenarios_dir / name
            log(f"== {cid}: {kind} {name}")
            if kind == "outage":
                od = new_run_dir(cdir, "outage")
                write_outage_run(od, repo=repo, changes=OUTAGE_CHANGES_QUICK if quick else DEFAULT_CHANGES,
                                 progress=lambda m: log("      " + m))
                doc["runs"][name] = od.name
                entries[cid] = cl.c9_outage(read_summary(od, expect=Kind.OUTAGE), od.name)
            elif kind == "load":
                if run_load is None:
                    entries[cid] = cl.not_run(cid, "no load runner was given")
                    continue
                sc = load_scenario(path)
                rd = new_run_dir(cdir, sc.name)
                res = run_load(sc, rd, scenarios_dir, repo=repo)
                doc["runs"][name] = rd.name
                entries[cid] = cl.c4_overload(res.summary, rd.name)
            elif kind == "sweep":
                sd = run_sweep(path, CROSSOVER_GRID, out=cdir, extra_overrides=[], scenarios_dir=scenarios_dir,
                               repo=repo, log=log)
                doc["runs"][name] = sd.name
                entries[cid] = cl.c5_crossover(read_sweep(sd), sd.name)
            else:
                sc = load_scenario(path)
                res = run_scenario(sc, new_run_dir(cdir, sc.name), scenarios_dir, repo=repo, log=log)
                doc["runs"][name] = res.run_dir.name
                if res.status is RunStatus.INTERRUPTED:
                    raise KeyboardInterrupt
                if cid == "C6":
                    faults[sc.name] = res.summary
                    entries[cid] = cl.c6_loss(faults, [doc["runs"][n] for n in doc["runs"] if "faults/" in n])
                elif cid == "C7":
                    entries[cid] = cl.c7_security(res.summary, res.run_dir.name)
                else:
                    entries[cid] = cl.c8_waste(res.summary, res.run_dir.name)
            save()
    except (KeyboardInterrupt, Interrupted):
        doc.update(status_keys(RunStatus.INTERRUPTED))
        save()
        raise Interrupted(str(cdir)) from None
    doc.update(status_keys(RunStatus.COMPLETE))
    save()
    return cdir


def _rebase(entry: dict[str, Any], sub: str) -> dict[str, Any]:
    """Run paths of a claim entry, made relative to the claims directory."""
    return {**entry, "runs": [f"{sub}/{r}" for r in entry.get("runs") or []]}
