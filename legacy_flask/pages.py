"""The HTML front page: links to the API, built with ``url_for`` like every Flask page."""

from __future__ import annotations

from flask import Blueprint, render_template

from legacy_flask.auth import current_user

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html", user=current_user)
