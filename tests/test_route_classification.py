"""A request the legacy app would route to a Flask rule is classified as that rule by the gateway.

The access policy, the route (and so its flag) and the log label are all decided on the
gateway's reading of the path. If that reading differed from Werkzeug's, a spelling could be
classified as a public or unflagged path while Flask serves it as a protected one (Arabic-Indic
``PUT /api/books/١`` once passed the gateway's admin policy and reached book 1). For generated
spellings of every rule in the demo's real ``url_map``, whatever ``MapAdapter.match`` routes to a
rule gets, in the gateway, exactly the policy and route of a plain spelling of that rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import demo_config
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule

from gateway.app import create_app
from gateway.build import build_auth, build_legacy
from gateway.canonical import canonical_path
from gateway.errors import BadRequest
from gateway.path_template import Param, from_flask_rule, parse_template
from gateway.routes import RouteTable
from gateway.settings import load_settings

#: Decimal digits of several scripts (ASCII, Arabic-Indic, Devanagari, fullwidth, mathematical),
#: look-alikes that are not decimal (superscript, Roman numeral, circled), and ordinary text.
DIGITS = "0123456789٠١٢٣٤٥٦٧٨٩०१२३४५६७८९０１２３４５６７８９𝟎𝟏𝟐"
NOT_DIGITS = "²³¹ⅠⅫ①½-+.eE_ abcxyzé~%"
SEGMENT = st.text(alphabet=DIGITS + NOT_DIGITS, min_size=1, max_size=6)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp: Path = tmp_path_factory.mktemp("classification")
    settings = load_settings(demo_config(tmp), {})
    gateway = create_app(settings)
    wsgi_app, legacy = build_legacy(settings)
    legacy.close()
    return {
        "url_map": wsgi_app.url_map,
        "policies": build_auth(settings, wsgi_app).policies,
        "routes": gateway.table,
        "labels": RouteTable(gateway.inventory.legacy_routes),
    }


def plain_spelling(template: str) -> str:
    """An ASCII instance of a template: ``/api/books/{book_id:int}`` gives ``/api/books/1``."""
    return "/" + "/".join(
        ("1" if part.converter == "int" else "x") if isinstance(part, Param) else part.text
        for part in parse_template(template)
    )


def classification(demo: dict[str, Any], method: str, path: str) -> tuple[Any, ...]:
    route = demo["routes"].match(method, path)
    label = demo["labels"].match(method, path)
    return (
        demo["policies"].lookup(method, path),
        route.route.template if route else None,
        label.route.template if label else None,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_what_flask_routes_to_a_rule_is_classified_as_that_rule(
    demo: dict[str, Any], data: st.DataObject
) -> None:
    rules: list[Rule] = [r for r in demo["url_map"].iter_rules() if "<" in r.rule]
    rule = data.draw(st.sampled_from(rules), label="rule")
    method = data.draw(st.sampled_from(sorted(rule.methods - {"OPTIONS"})), label="method")
    segments = iter(data.draw(st.lists(SEGMENT, min_size=8, max_size=8), label="values"))
    template = from_flask_rule(rule.rule)
    path = "/" + "/".join(
        next(segments) if isinstance(part, Param) else part.text
        for part in parse_template(template)
    )
    try:
        path = canonical_path(quote(path, safe="/").encode("ascii"))
    except BadRequest:
        return  # refused with a 400 before anything is classified: nobody serves it
    adapter = demo["url_map"].bind("localhost")
    try:
        matched, _ = adapter.match(path, method, return_rule=True)
    except HTTPException:
        return  # Flask routes it nowhere (404, 405, or a redirect to another spelling)
    expected = classification(demo, method, plain_spelling(from_flask_rule(matched.rule)))
    assert classification(demo, method, path) == expected, (method, path, matched.rule)


@pytest.mark.parametrize("digit", ["١", "१", "１", "𝟏"])
def test_unicode_digits_get_the_int_rules_policy(demo: dict[str, Any], digit: str) -> None:
    """The finding itself: ``PUT /api/books/١`` is Flask's ``/api/books/<int:book_id>``."""
    path = f"/api/books/{digit}"
    adapter = demo["url_map"].bind("localhost")
    rule, args = adapter.match(path, "PUT", return_rule=True)
    assert (rule.rule, args) == ("/api/books/<int:book_id>", {"book_id": 1})
    policy = demo["policies"].lookup("PUT", path)
    assert policy.roles == frozenset({"admin"})
    assert demo["routes"].match("GET", path).route.template == "/api/books/{book_id:int}"


@pytest.mark.parametrize("segment", ["²", "Ⅻ", "①", "½"])
def test_digit_look_alikes_are_not_numbers(demo: dict[str, Any], segment: str) -> None:
    path = f"/api/books/{segment}"
    with pytest.raises(HTTPException):
        demo["url_map"].bind("localhost").match(path, "GET")
    route = demo["routes"].match("GET", path)
    assert route is None or route.route.template != "/api/books/{book_id:int}"
