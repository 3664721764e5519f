"""The mode registry (bench.modes): names resolve to kinds, each kind's declarations agree with the code that
implements it (the simulator, the producer's charged routes, the Locust users, the config schema), and the
places that used to test mode names now get the same answers from the registry."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
from matplotlib import colormaps

from bench.config import POLL_STYLES, load_scenario
from bench.model import poll_model
from bench.modes import (
    CURSOR,
    ETAG,
    MODE_KINDS,
    WEBHOOK,
    Observation,
    Workload,
    default_styles,
    find_kind,
    is_pull,
    is_push,
    kind_of,
    mode_fields,
    model_for,
    poll_styles,
    route_default_modes,
    style_mode,
)
from bench.simulation.simulate import SIMULATORS
from reports.figures import mode_colours
from reports.fmt import fmt_policy, is_webhook

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name,kind", [("polling", CURSOR), ("polling_etag", ETAG), ("webhook", WEBHOOK),
                                       ("webhook_outbox", WEBHOOK), ("webhook_ff", WEBHOOK)])
def test_names_resolve_to_their_kind(name: str, kind) -> None:
    assert kind_of(name) is kind and find_kind(name) is kind


@pytest.mark.parametrize("name", ["poll", "polling_cursor", "webhooks-x", "Webhook", "", "webhook" + "x" * 41])
def test_unknown_names_are_refused_with_the_known_patterns(name: str) -> None:
    assert find_kind(name) is None and not is_pull(name) and not is_push(name)
    with pytest.raises(KeyError, match="known mode names are polling \\(cursor\\)"):
        kind_of(name)


def test_kinds_have_distinct_names_styles_routes_and_colours() -> None:
    for attr in ("name", "default_name", "colour", "label"):
        values = [getattr(k, attr) for k in MODE_KINDS]
        assert len(set(values)) == len(values), attr
    styles = [k.style for k in MODE_KINDS if k.style]
    assert len(set(styles)) == len(styles)
    # kinds may share a route (cursor, long and adaptive polling all read /changes): an unlabelled request is
    # charged to the first kind that declares the route, a labelled one to its label
    assert route_default_modes() == {"changes": "polling", "resource": "polling_etag", "stream": "polling_sse",
                                     "event": "thin"}
    for k in MODE_KINDS:  # a kind's default name is one of its names, and no other kind claims it
        assert k.matches(k.default_name) and [x for x in MODE_KINDS if x.matches(k.default_name)] == [k]


def test_config_takes_styles_and_keys_from_the_registry() -> None:
    assert POLL_STYLES == poll_styles() == ("cursor", "etag", "long", "adaptive", "sse")
    assert default_styles() == ("cursor", "etag")  # a scenario that does not list styles runs these
    assert style_mode("cursor") == "polling" and style_mode("etag") == "polling_etag"
    assert style_mode("long") == "polling_long" and style_mode("sse") == "polling_sse"
    assert set(mode_fields("polling")) == {"cursor_limit", "long_wait", "adaptive_min", "adaptive_max",
                                           "adaptive_factor", "adaptive_shrink", "advise_interval", "advise_above",
                                           "sse_heartbeat"}
    assert set(mode_fields("webhook")) == {"reconcile_interval"}
    sc = load_scenario(REPO / "scenarios" / "default.toml", ["polling.cursor_limit=7"])
    assert sc.polling.cursor_limit == 7 and sc.to_dict()["polling"]["cursor_limit"] == 7
    assert sc.modes == ("polling", "polling_etag", "webhook")
    only = load_scenario(REPO / "scenarios" / "default.toml", ['polling.styles=["etag"]', "webhook.enabled=false"])
    assert only.modes == ("polling_etag",)
    # a subscription's name says its kind
    subs = ['webhook.subscriptions=[{name="webhook"},{name="hybrid"},{name="thin_fetch"}]']
    mixed = load_scenario(REPO / "scenarios" / "default.toml", subs)
    assert mixed.modes == ("polling", "polling_etag", "webhook", "hybrid", "thin_fetch")
    assert [kind_of(m).name for m in mixed.modes[2:]] == ["webhook", "hybrid", "thin"]


def test_every_simulated_kind_has_a_simulator_and_no_other_does() -> None:
    assert set(SIMULATORS) == {k.name for k in MODE_KINDS if k.simulated}


def test_kinds_declare_routes_the_producer_names_and_locust_users_that_exist() -> None:
    import bench.modes as registry

    def route_name(value: ast.expr) -> str | None:  # name="changes", or name=THIN.charged_route
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
        if isinstance(value, ast.Attribute) and value.attr == "charged_route" and isinstance(value.value, ast.Name):
            return getattr(registry, value.value.id).charged_route
        return None

    route_names = {route_name(kw.value) for module in (REPO / "servers" / "producer").glob("*.py")
                   for node in ast.walk(ast.parse(module.read_text())) if isinstance(node, ast.Call)
                   for kw in node.keywords if kw.arg == "name"} - {None}
    # the pollers' locustfile is not imported here: importing locust gevent-patches the test process
    pollers = ast.parse((REPO / "scenarios" / "pollers.py").read_text())
    classes = {n.name for n in ast.walk(pollers) if isinstance(n, ast.ClassDef)}
    for k in MODE_KINDS:
        assert k.charged_route is None or k.charged_route in route_names, k.name
        assert k.locust_user is None or (k.locust_user in classes and k.users_per_run is not None), k.name
        if k.observes is not Observation.PUSH:  # the consumer drives it: a route, a user, a style, a model
            assert k.charged_route is not None and k.locust_user is not None, k.name
            assert k.style is not None and k.model is not None, k.name


def test_models_are_the_analytic_poll_model() -> None:
    w = Workload("poisson", 0.1, 1.0, 50)
    assert model_for("polling", w) == poll_model("poisson", 0.1, 1.0, 50, state=False)
    assert model_for("polling_etag", w) == poll_model("poisson", 0.1, 1.0, 1, state=True)
    assert model_for("webhook_outbox", w)["requests_per_change"] == 1.0
    assert math.isclose(model_for("polling_etag", w)["wasted_fraction"], math.exp(-0.1))
    assert CURSOR.formulas.wasted("poisson") == "e^(-lambda*T)"
    assert CURSOR.formulas.wasted("constant") == "max(0, 1 - T/I)^targets"
    assert ETAG.formulas.latency("constant") == "T/2" and ETAG.formulas.latency("poisson").startswith("1/lambda")


def test_reports_words_and_colours_come_from_the_registry() -> None:
    assert is_webhook("webhook_ff") and not is_webhook("polling_etag")
    assert fmt_policy("polling", "polling") == "cursor polling catch-up"
    assert fmt_policy("polling", "x", "etag") == "state polling"
    assert fmt_policy("polling", "x") == "polling"
    assert fmt_policy("outbox", "webhook_outbox") == "retries + durable outbox"
    tab10 = [tuple(c) for c in colormaps["tab10"].colors]
    colours = mode_colours(["polling", "polling_etag", "webhook", "webhook_ff", "other"])
    assert [colours[m] for m in ("polling", "polling_etag", "webhook")] == tab10[:3]  # as the reports drew them
    assert len(set(colours.values())) == 5  # a second webhook and an unknown mode get colours of their own
