"""Shadow, fallback and breaker settings: config mistakes, and the route plans built from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.build import build_route_plans
from gateway.errors import ConfigError
from gateway.resilience import GuardedService
from gateway.route_plan import route_label
from gateway.settings import RouteSettings, Settings, load_settings
from gateway.shadow.compare import CompareRules
from gateway.shadow.runner import ShadowPlan

BASE = """
[legacy]
app = "legacy_flask:create_app"

[services.svc]
app = "shadow_apps:create_candidate"
"""

FLAGGED = """
[[routes]]
path = "/thing/{thing_id:int}"
methods = ["GET", "POST"]
backend = "svc"
flag = { name = "things", mode = "shadow" }
"""

ON_LEGACY = """
[[routes]]
path = "/old"
methods = ["GET"]
backend = "legacy"
"""


def load(tmp_path: Path, routes: str) -> Settings:
    path = tmp_path / "gateway.toml"
    path.write_text(BASE + routes)
    return load_settings(path, {})


def problems_of(tmp_path: Path, routes: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, routes)
    return caught.value.problems


@pytest.mark.parametrize(
    ("routes", "key", "problem"),
    [
        (
            FLAGGED.replace('flag = { name = "things", mode = "shadow" }\n', "")
            + "[routes.shadow]\nsample_rate = 0.5\n",
            "routes[0].shadow",
            "needs a flag (shadowing starts when the flag's mode is 'shadow')",
        ),
        (
            ON_LEGACY + "timeout = 2.0\n",
            "routes[0].timeout",
            "only for a route whose backend is a service",
        ),
        (
            ON_LEGACY + "fallback = true\n",
            "routes[0].fallback",
            "only for a route whose backend is a service",
        ),
        (
            ON_LEGACY + "[routes.breaker]\nfailures = 3\n",
            "routes[0].breaker",
            "only for a route whose backend is a service",
        ),
        (
            ON_LEGACY + 'flag = { name = "things" }\n[routes.shadow]\n',
            "routes[0].shadow",
            "only for a route whose backend is a service",
        ),
        (
            FLAGGED + ON_LEGACY + "fallback = true\n",
            "routes[1].fallback",
            "only for a route whose backend is a service",
        ),
        (
            FLAGGED + '[routes.shadow]\nignore = ["/ok", "generated_at"]\n',
            "routes[0].shadow.ignore",
            "'generated_at' is not a JSON Pointer (it must start with '/')",
        ),
        (
            FLAGGED + '[routes.shadow]\nunordered = ["tags"]\n',
            "routes[0].shadow.unordered",
            "'tags' is not a JSON Pointer",
        ),
        (
            FLAGGED + "[routes.shadow]\nsample_rate = 1.5\n",
            "routes[0].shadow.sample_rate",
            "Input should be less than or equal to 1 (got 1.5)",
        ),
        (
            FLAGGED + "[routes.shadow]\nnoise_sample_rate = -0.1\n",
            "routes[0].shadow.noise_sample_rate",
            "Input should be greater than or equal to 0 (got -0.1)",
        ),
        (
            FLAGGED + '[routes.shadow]\nprimary = "candidate"\n',
            "routes[0].shadow.primary",
            "Input should be 'legacy' or 'new'",
        ),
        (
            FLAGGED + "[routes.shadow]\nsample_rat = 0.5\n",
            "routes[0].shadow.sample_rat",
            "unknown key",
        ),
        (
            FLAGGED + "timeout = 0\n",
            "routes[0].timeout",
            "Input should be greater than 0 (got 0)",
        ),
        (
            FLAGGED + "[routes.breaker]\nfailures = 0\n",
            "routes[0].breaker.failures",
            "Input should be greater than or equal to 1 (got 0)",
        ),
        (
            FLAGGED + "[routes.breaker]\ncooldown = -1\n",
            "routes[0].breaker.cooldown",
            "Input should be greater than 0 (got -1)",
        ),
    ],
)
def test_mistakes_name_the_file_the_key_and_the_problem(
    tmp_path: Path, routes: str, key: str, problem: str
) -> None:
    problems = problems_of(tmp_path, routes)
    source = str(tmp_path / "gateway.toml")
    assert all(p.startswith(f"{source}: ") for p in problems), problems
    assert any(f"{key}: {problem}" in p for p in problems), problems


def test_shadow_limits_are_checked(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, FLAGGED + "\n[shadow]\nmax_concurrent = 0\n")
    assert problems == [
        f"{tmp_path / 'gateway.toml'}: shadow.max_concurrent: "
        "Input should be greater than or equal to 1 (got 0)"
    ]


def test_every_guard_on_a_legacy_route_is_reported_at_once(tmp_path: Path) -> None:
    routes = ON_LEGACY + "timeout = 1.0\nfallback = true\n[routes.breaker]\n"
    text = "\n".join(problems_of(tmp_path, routes))
    for key in ("timeout", "fallback", "breaker"):
        assert f"routes[0].{key}: only for a route whose backend is a service" in text


def test_each_route_problem_is_a_problem_of_its_own_naming_the_file(tmp_path: Path) -> None:
    routes = ON_LEGACY + "timeout = 1.0\nfallback = true\n"
    source = tmp_path / "gateway.toml"
    assert problems_of(tmp_path, routes) == [
        f"{source}: routes[0].timeout: only for a route whose backend is a service "
        "(legacy has nothing to fall back to)",
        f"{source}: routes[0].fallback: only for a route whose backend is a service "
        "(legacy has nothing to fall back to)",
    ]


def test_guards_and_shadow_settings_are_read(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        FLAGGED
        + "timeout = 1.5\nfallback = true\nfallback_max_body = 10\n"
        + "[routes.breaker]\nfailures = 2\n"
        + '[routes.shadow]\nprimary = "new"\ncompare_headers = ["Content-Type", "ETag"]\n',
    )
    [route] = settings.routes
    assert (route.timeout, route.fallback, route.fallback_max_body) == (1.5, True, 10)
    assert route.breaker is not None
    assert (route.breaker.failures, route.breaker.window, route.breaker.cooldown) == (2, 30, 30)
    assert route.shadow is not None
    assert route.shadow.primary == "new"
    assert route.shadow.compare_headers == ("content-type", "etag")


# --- build_route_plans ---------------------------------------------------------------------------


async def legacy_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError("not called")


async def svc_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError("not called")


def test_a_flagged_route_without_shadow_settings_gets_the_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, FLAGGED)
    [plan] = build_route_plans(settings, {"svc": svc_app}, legacy_app)
    assert plan.app is svc_app
    assert plan.service is svc_app
    assert plan.shadow == ShadowPlan(
        label="GET,POST /thing/{thing_id:int}",
        primary="legacy",
        sample_rate=1.0,
        noise_sample_rate=0.1,
        timeout=5.0,
        max_body=64 * 1024,
        side_effect_free=False,
        rules=CompareRules(headers=("content-type",)),
    )


def test_shadow_settings_reach_the_plan(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        FLAGGED
        + "[routes.shadow]\n"
        + 'primary = "new"\nsample_rate = 0.25\nnoise_sample_rate = 0\ntimeout = 0.5\n'
        + "max_body = 10\nside_effect_free = true\n"
        + 'ignore = ["/generated_at"]\nunordered = ["/tags"]\nfloat_tolerance = 0.01\n',
    )
    [plan] = build_route_plans(settings, {"svc": svc_app}, legacy_app)
    assert plan.shadow == ShadowPlan(
        label="GET,POST /thing/{thing_id:int}",
        primary="new",
        sample_rate=0.25,
        noise_sample_rate=0.0,
        timeout=0.5,
        max_body=10,
        side_effect_free=True,
        rules=CompareRules(
            headers=("content-type",),
            ignore=("/generated_at",),
            unordered=("/tags",),
            float_tolerance=0.01,
        ),
    )


@pytest.mark.parametrize(
    ("guards", "breaker"),
    [
        ("fallback = true\n", None),
        ("timeout = 2.0\n", None),
        ("[routes.breaker]\nfailures = 2\ncooldown = 7\n", {"state": "closed", "trips": 0}),
    ],
)
def test_a_guarded_route_is_served_through_a_guarded_service(
    tmp_path: Path, guards: str, breaker: dict[str, Any] | None
) -> None:
    routes = (
        FLAGGED.replace('flag = { name = "things", mode = "shadow" }\n', "") + guards + ON_LEGACY
    )
    settings = load(tmp_path, routes)
    guarded, plain = build_route_plans(settings, {"svc": svc_app}, legacy_app)
    assert isinstance(guarded.app, GuardedService)
    assert guarded.app.label == "GET,POST /thing/{thing_id:int}"
    assert guarded.service is svc_app  # a shadow copy skips the guards
    assert guarded.shadow is None  # no flag, nothing to shadow
    if breaker is None:
        assert guarded.app.breaker is None
    else:
        assert guarded.app.breaker is not None
        assert guarded.app.breaker.label == "GET,POST /thing/{thing_id:int}"
        assert guarded.app.breaker.view() == {**breaker, "recent_failures": 0}
        for _ in range(2):
            guarded.app.breaker.record("closed", False)
        assert guarded.app.breaker.view() == {"state": "open", "trips": 1, "retry_in": 7.0}
    assert guarded.breaker is guarded.app.breaker  # the plan carries its breaker
    assert plain.app is legacy_app
    assert plain.shadow is None


@pytest.mark.parametrize(
    ("methods", "path", "label"),
    [
        (("GET",), "/api/books/{book_id:int}", "GET /api/books/{book_id:int}"),
        (("GET", "HEAD", "PUT"), "/a/{x}", "GET,HEAD,PUT /a/{x}"),
    ],
)
def test_route_label(methods: tuple[str, ...], path: str, label: str) -> None:
    route = RouteSettings(path=path, methods=methods, backend="svc")
    assert route_label(route.methods, route.path) == label
