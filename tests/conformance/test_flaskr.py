"""Flask's tutorial app, flaskr, unchanged, as the legacy app of a real ``gateway serve``.

flaskr (``vendor/flaskr``, Flask 3.1.3) is served through the gateway's WSGI adapter, and its own
tests (``examples/tutorial/tests/test_auth.py``, ``test_blog.py``, ``test_factory.py`` at that
tag) are replayed over HTTP with an httpx client that keeps cookies: each test below carries the
upstream test's name and asserts what it asserts. Where upstream looks inside the app (``session``,
``g.user``, the database), this does it the way upstream's ``conftest.py`` does: flaskr's own
``create_app`` with the same test config, in this process, on the same database file, and
Flask's own session serializer on the cookie the gateway passed back. (``test_factory.py``'s
``test_config`` and ``test_db.py`` look only inside the process, so they have nothing to replay.)

Every test runs twice: with every route on flaskr, and with ``GET /auth/logout`` migrated to a
FastAPI service (``flaskr_services.py``) that clears the same Flask session.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import GatewayProcess

# Two gateway processes, every test run against each: over 10 s on a busy 2-core machine.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor" / "flaskr"
#: The data upstream's conftest loads into every test's database (users "test" and "other").
DATA_SQL = (VENDOR / "tests" / "data.sql").read_text(encoding="utf8")
SECRET_KEY = "conformance-flaskr-secret"

LEGACY = """
[server]
graceful_shutdown = 2

[legacy]
app = "flaskr:create_app"
threads = 4

[legacy.options.test_config]
TESTING = true
DATABASE = {database}
SECRET_KEY = {secret_key}
"""

#: No ``[auth.session]``: the service reaches the Flask session through the codec the gateway
#: builds for any Flask legacy app.
LOGOUT_MIGRATED = """
[services.auth]
app = "flaskr_services:create_auth_service"

[[routes]]
path = "/auth/logout"
methods = ["GET"]
backend = "auth"
"""

#: The gateway authenticates with flaskr's own session cookie (its user id is an integer): every
#: flow still works, so the cookie reaches flaskr untouched.
SESSION_AUTH = """
[auth]
order = ["session"]

[auth.session]
subject_key = "user_id"
"""

VARIANTS = {"all-legacy": "", "logout-migrated": LOGOUT_MIGRATED, "session-auth": SESSION_AUTH}


@dataclass
class Flaskr:
    """flaskr behind a running gateway, and the same app in this process for its database."""

    gateway: GatewayProcess
    app: Any
    module: Any
    logout_backend: str

    def reset_database(self) -> None:
        """What upstream's ``app`` fixture does for each test: init-db, then its data."""
        with self.app.app_context():
            db = self.module.db.get_db()
            # This connection only (flaskr's own are untouched): no fsync per statement, which
            # makes a reset take milliseconds instead of a tenth of a second.
            db.execute("PRAGMA synchronous = OFF")
            self.module.db.init_db()
            db.executescript(DATA_SQL)

    def query(self, sql: str) -> Any:
        with self.app.app_context():
            return self.module.db.get_db().execute(sql).fetchone()

    def execute(self, sql: str) -> None:
        with self.app.app_context():
            db = self.module.db.get_db()
            db.execute(sql)
            db.commit()

    def session(self, client: httpx.Client) -> dict[str, Any]:
        """The Flask session the client's cookie carries, read with flaskr's own interface."""
        cookie = client.cookies.get("session")
        if cookie is None:
            return {}
        serializer = self.app.session_interface.get_signing_serializer(self.app)
        return dict(serializer.loads(cookie))


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def flaskr(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flaskr]:
    root = tmp_path_factory.mktemp(request.param)
    # A copy next to the config, which the gateway makes importable: flaskr creates its
    # instance folder beside its package, and that must not be inside the repository.
    shutil.copytree(VENDOR / "flaskr", root / "flaskr")
    database = root / "flaskr.sqlite"
    config = root / "gateway.toml"
    config.write_text(
        LEGACY.format(database=json.dumps(str(database)), secret_key=json.dumps(SECRET_KEY))
        + VARIANTS[request.param]
    )
    test_config = {"TESTING": True, "DATABASE": str(database), "SECRET_KEY": SECRET_KEY}
    with _imported_flaskr(root) as module:
        app = module.create_app(test_config)
        site = Flaskr(
            gateway=GatewayProcess(config, env={"PYTHONPATH": _python_path()}),
            app=app,
            module=module,
            logout_backend="auth" if request.param == "logout-migrated" else "legacy",
        )
        site.reset_database()
        with site.gateway:
            yield site


@pytest.fixture
def site(flaskr: Flaskr) -> Flaskr:
    flaskr.reset_database()
    return flaskr


@pytest.fixture
def client(site: Flaskr) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.gateway.base_url, timeout=10) as http:
        yield http


class AuthActions:
    """Upstream's ``AuthActions``, over HTTP."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def login(self, username: str = "test", password: str = "test") -> httpx.Response:
        return self._client.post("/auth/login", data={"username": username, "password": password})

    def logout(self) -> httpx.Response:
        return self._client.get("/auth/logout")


@pytest.fixture
def auth(client: httpx.Client) -> AuthActions:
    return AuthActions(client)


# -- examples/tutorial/tests/test_factory.py -------------------------------------------------------


def test_hello(client: httpx.Client) -> None:
    response = client.get("/hello")
    assert response.content == b"Hello, World!"
    assert response.headers["x-gateway-backend"] == "legacy"


# -- examples/tutorial/tests/test_auth.py ----------------------------------------------------------


def test_register(client: httpx.Client, site: Flaskr) -> None:
    # test that viewing the page renders without template errors
    assert client.get("/auth/register").status_code == 200

    # test that successful registration redirects to the login page
    response = client.post("/auth/register", data={"username": "a", "password": "a"})
    assert response.headers["Location"] == "/auth/login"

    # test that the user was inserted into the database
    assert site.query("SELECT * FROM user WHERE username = 'a'") is not None


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("", "", b"Username is required."),
        ("a", "", b"Password is required."),
        ("test", "test", b"already registered"),
    ],
)
def test_register_validate_input(
    client: httpx.Client, username: str, password: str, message: bytes
) -> None:
    response = client.post("/auth/register", data={"username": username, "password": password})
    assert message in response.content


def test_login(client: httpx.Client, auth: AuthActions, site: Flaskr) -> None:
    # test that viewing the page renders without template errors
    assert client.get("/auth/login").status_code == 200

    # test that successful login redirects to the index page
    response = auth.login()
    assert response.headers["Location"] == "/"

    # login request set the user_id in the session
    # check that the user is loaded from the session
    index = client.get("/")
    assert site.session(client)["user_id"] == 1
    # g.user["username"] == "test", as the page shows it (base.html)
    assert b"<span>test</span>" in index.content


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [("a", "test", b"Incorrect username."), ("test", "a", b"Incorrect password.")],
)
def test_login_validate_input(
    auth: AuthActions, username: str, password: str, message: bytes
) -> None:
    response = auth.login(username, password)
    assert message in response.content


def test_logout(client: httpx.Client, auth: AuthActions, site: Flaskr) -> None:
    auth.login()
    assert site.session(client)["user_id"] == 1

    response = auth.logout()
    assert "user_id" not in site.session(client)
    # Beyond upstream: who served it, and the redirect flaskr's logout sends.
    assert response.headers["x-gateway-backend"] == site.logout_backend
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert b"Log In" in client.get("/").content


# -- examples/tutorial/tests/test_blog.py ----------------------------------------------------------


def test_index(client: httpx.Client, auth: AuthActions) -> None:
    response = client.get("/")
    assert b"Log In" in response.content
    assert b"Register" in response.content

    auth.login()
    response = client.get("/")
    assert b"test title" in response.content
    assert b"by test on 2018-01-01" in response.content
    assert b"test\nbody" in response.content
    assert b'href="/1/update"' in response.content


@pytest.mark.parametrize("path", ["/create", "/1/update", "/1/delete"])
def test_login_required(client: httpx.Client, path: str) -> None:
    response = client.post(path)
    assert response.headers["Location"] == "/auth/login"


def test_author_required(client: httpx.Client, auth: AuthActions, site: Flaskr) -> None:
    # change the post author to another user
    site.execute("UPDATE post SET author_id = 2 WHERE id = 1")

    auth.login()
    # current user can't modify other user's post
    assert client.post("/1/update").status_code == 403
    assert client.post("/1/delete").status_code == 403
    # current user doesn't see edit link
    assert b'href="/1/update"' not in client.get("/").content


@pytest.mark.parametrize("path", ["/2/update", "/2/delete"])
def test_exists_required(client: httpx.Client, auth: AuthActions, path: str) -> None:
    auth.login()
    response = client.post(path)
    assert response.status_code == 404
    # Beyond upstream: the message flaskr gives abort(404, ...) reaches the client.
    assert b"Post id 2 doesn&#39;t exist." in response.content


def test_create(client: httpx.Client, auth: AuthActions, site: Flaskr) -> None:
    auth.login()
    assert client.get("/create").status_code == 200
    client.post("/create", data={"title": "created", "body": ""})

    count = site.query("SELECT COUNT(id) FROM post")[0]
    assert count == 2


def test_update(client: httpx.Client, auth: AuthActions, site: Flaskr) -> None:
    auth.login()
    assert client.get("/1/update").status_code == 200
    client.post("/1/update", data={"title": "updated", "body": ""})

    post = site.query("SELECT * FROM post WHERE id = 1")
    assert post["title"] == "updated"


@pytest.mark.parametrize("path", ["/create", "/1/update"])
def test_create_update_validate(client: httpx.Client, auth: AuthActions, path: str) -> None:
    auth.login()
    response = client.post(path, data={"title": "", "body": ""})
    assert b"Title is required." in response.content


def test_delete(client: httpx.Client, auth: AuthActions, site: Flaskr) -> None:
    auth.login()
    response = client.post("/1/delete")
    assert response.headers["Location"] == "/"

    post = site.query("SELECT * FROM post WHERE id = 1")
    assert post is None


# -- beyond upstream: a whole visit, following redirects -------------------------------------------


def test_a_visit_following_redirects(client: httpx.Client, site: Flaskr) -> None:
    """Register, log in, write, edit and delete a post as a browser would, redirects followed."""
    page = client.post(
        "/auth/register", data={"username": "visitor", "password": "pw"}, follow_redirects=True
    )
    assert page.url.path == "/auth/login"
    page = client.post(
        "/auth/login", data={"username": "visitor", "password": "pw"}, follow_redirects=True
    )
    assert page.url.path == "/"
    assert b"<span>visitor</span>" in page.content

    page = client.post(
        "/create", data={"title": "hello", "body": "first\npost"}, follow_redirects=True
    )
    assert page.url.path == "/"
    assert b"hello" in page.content
    assert b"first\npost" in page.content
    post_id = site.query("SELECT id FROM post WHERE title = 'hello'")[0]

    page = client.post(
        f"/{post_id}/update", data={"title": "hello again", "body": ""}, follow_redirects=True
    )
    assert b"hello again" in page.content
    page = client.post(f"/{post_id}/delete", follow_redirects=True)
    assert b"hello again" not in page.content

    page = client.get("/auth/logout", follow_redirects=True)
    assert page.url.path == "/"
    assert b"Log In" in page.content
    assert site.session(client) == {}


def test_static_file_with_conditional_and_range_requests(client: httpx.Client) -> None:
    """flaskr's stylesheet, sent by Werkzeug's ``send_file`` as a file iterable."""
    css = (VENDOR / "flaskr" / "static" / "style.css").read_bytes()
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert response.content == css
    assert response.headers["content-length"] == str(len(css))

    unchanged = client.get("/static/style.css", headers={"If-None-Match": response.headers["etag"]})
    assert unchanged.status_code == 304
    assert unchanged.content == b""

    part = client.get("/static/style.css", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == css[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(css)}"

    head = client.head("/static/style.css")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(css))
    assert head.content == b""


# -- helpers ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _imported_flaskr(root: Path) -> Iterator[Any]:
    """Import the copy of flaskr in ``root``; forget it (sys.path, sys.modules) afterwards."""
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("flaskr")
        importlib.import_module("flaskr.db")
        yield module
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.partition(".")[0] == "flaskr"]:
            del sys.modules[name]


def _python_path() -> str:
    """``flaskr_services`` importable in the gateway process (flaskr is, beside its config)."""
    return os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
