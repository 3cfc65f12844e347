from __future__ import annotations

import re

import pytest

from gateway.path_template import Param, Static, from_flask_rule, parse_template, shape


@pytest.mark.parametrize(
    ("rule", "template"),
    [
        ("/api/books/<int:book_id>", "/api/books/{book_id:int}"),
        ("/static/<path:filename>", "/static/{filename:path}"),
        ("/u/<username>", "/u/{username}"),
        ("/f/<float:x>", "/f/{x}"),
        ("/n/<int(signed=True):n>", "/n/{n:int}"),
        ("/plain", "/plain"),
    ],
)
def test_flask_rules_convert(rule: str, template: str) -> None:
    assert from_flask_rule(rule) == template


def test_shape_erases_names_and_converters() -> None:
    assert shape("/api/books/{book_id:int}") == shape("/api/books/{id}") == "/api/books/{}"


def test_parse() -> None:
    assert parse_template("/a/{b:int}/c") == (Static("a"), Param("b", "int"), Static("c"))


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("api", "must start with '/'"),
        ("/a/{x", "must be a whole"),
        ("/a/b{x}", "must be a whole"),
        ("/a/{x:float}", "unknown converter 'float'"),
        ("/a//b", "empty or a dot segment"),
        ("/a/../b", "empty or a dot segment"),
        ("/{x:path}/b", "must be the last segment"),
        ("/{x}/{x}", "appears twice"),
    ],
)
def test_bad_templates(template: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_template(template)
