"""End to end: the dashboard at ``/_gateway/`` in a headless browser, through ``gateway serve``.

Playwright's Python package drives Debian's chromium (``/usr/bin/chromium``; ``.ci/run`` installs
it); no browser is ever downloaded. Skipped, with the reason, when either is missing.

With ``DASHBOARD_SCREENSHOT=docs/dashboard.png`` the test also takes the README's screenshot.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import REPO, GatewayProcess, demo_config, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)

CATALOG_FLAG = "/_gateway/api/flags/catalog-books"
DASHBOARD_APIS = ["/_gateway/", "/_gateway/api/dashboard", "/_gateway/api/status"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # The demo as shipped: catalog-books a 50% canary, accounts-me in shadow mode.
    config = demo_config(tmp_path_factory.mktemp("dashboard"), flags=None)
    with GatewayProcess(config) as process:
        yield process


@contextlib.contextmanager
def signed_in(gateway: GatewayProcess, username: str, password: str) -> Iterator[httpx.Client]:
    """A client holding the legacy app's Flask session cookie, as a browser would."""
    with httpx.Client(base_url=gateway.base_url) as client:
        response = client.post("/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        assert "session" in client.cookies
        yield client


def test_anonymous_and_non_admin_are_refused_everywhere(gateway: GatewayProcess) -> None:
    with (
        httpx.Client(base_url=gateway.base_url) as anonymous,
        signed_in(gateway, "bob", "builder") as bob,
        signed_in(gateway, "alice", "wonderland") as alice,
    ):
        refused_everywhere(anonymous, bob)
        assert alice.get("/_gateway/api/kill-switch").json() == {"enabled": False}


def refused_everywhere(anonymous: httpx.Client, bob: httpx.Client) -> None:
    for path in [*DASHBOARD_APIS, "/_gateway/static/dashboard.js"]:
        refused = anonymous.get(path)
        assert refused.status_code == 401, path
        assert refused.json()["request_id"] == refused.headers["x-request-id"]
        assert bob.get(path).status_code == 403, path
    # The controls' calls: refused by the admin check, whatever the CSRF header says.
    change = {"X-Gateway-CSRF": "1"}
    controls = [
        ("/_gateway/api/kill-switch", {"enabled": True}),
        ("/_gateway/api/flags/catalog-books", {"percentage": 100}),
    ]
    for path, body in controls:
        assert anonymous.put(path, json=body, headers=change).status_code == 401, path
        refused = bob.put(path, json=body, headers=change)
        assert refused.status_code == 403, path
        assert "admin" in refused.json()["error"]["message"]
    # The rollout buttons' calls likewise.
    for path, body in [
        ("/_gateway/api/rollouts", {"route": "GET /api/books"}),
        ("/_gateway/api/rollouts/catalog-books/abort", {}),
    ]:
        assert anonymous.post(path, json=body, headers=change).status_code == 401, path
        assert bob.post(path, json=body, headers=change).status_code == 403, path


def test_a_cookie_signed_change_needs_the_csrf_header(gateway: GatewayProcess) -> None:
    with signed_in(gateway, "alice", "wonderland") as alice:
        forgeries_refused(alice)


def forgeries_refused(alice: httpx.Client) -> None:
    url = "/_gateway/api/flags/catalog-books"
    # What a cross-site form could send: no custom header, a form body.
    forged = alice.put(url, data={"percentage": "100"})
    assert forged.status_code == 403
    assert "X-Gateway-CSRF" in forged.json()["error"]["message"]
    from_elsewhere = alice.put(
        url,
        json={"percentage": 100},
        headers={
            "X-Gateway-CSRF": "1",
            "Origin": "https://evil.example",
            "Sec-Fetch-Site": "cross-site",
        },
    )
    assert from_elsewhere.status_code == 403
    assert alice.get(url).json()["percentage"] == 50  # neither went through


@contextlib.contextmanager
def browser_page() -> Iterator[sync_api.Page]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


@pytest.fixture
def page(gateway: GatewayProcess) -> Iterator[sync_api.Page]:
    with browser_page() as page:
        yield page


def page_errors(page: sync_api.Page) -> list[str]:
    """Script errors and CSP violations ("Refused to ..."), collected from now on; a refused or
    missing resource (the 401 before signing in, the favicon) is expected, not an error."""
    errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            message.type == "error"
            and not message.text.startswith("Failed to load resource")
            and errors.append(message.text)
        ),
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def sign_in_as_alice(page: sync_api.Page, base: str) -> None:
    """With the application's own login form, as a person would."""
    page.goto(f"{base}/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "wonderland")
    page.click("form[action='/login'] button")
    page.wait_for_url(f"{base}/login")


def test_dashboard_in_a_browser(gateway: GatewayProcess, page: sync_api.Page) -> None:
    expect = sync_api.expect
    base = gateway.base_url
    errors = page_errors(page)

    # No session yet: the page is refused.
    assert page.goto(f"{base}/_gateway/").status == 401

    # Sign in with the application's own login form, then open the dashboard.
    sign_in_as_alice(page, base)
    assert page.goto(f"{base}/_gateway/").status == 200
    expect(page.locator("#who")).to_have_text("signed in as alice")

    # The route table: every Flask rule and service route, with its state.
    books = page.locator("#route-rows tr[data-route='GET /api/books']")
    expect(books).to_contain_text("catalog-books (canary 50%)")
    expect(page.locator("#route-rows tr[data-route='GET /api/me']")).to_contain_text("shadow")
    expect(page.locator("#route-rows tr[data-route='GET /admin/users']")).to_contain_text(
        "legacy only"
    )
    expect(page.locator("#states [data-state=canary] strong")).to_have_text("2")

    # The demo's deliberate difference: accounts adds /display_name.
    with httpx.Client(base_url=base) as api:
        drive_the_dashboard(gateway, page, api)
    assert errors == [], errors


def drive_the_dashboard(gateway: GatewayProcess, page: sync_api.Page, api: httpx.Client) -> None:
    expect = sync_api.expect
    books = page.locator("#route-rows tr[data-route='GET /api/books']")
    token = api.post("/api/token", json={"username": "alice", "password": "wonderland"})
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert api.get("/api/me", headers=bearer).headers["x-gateway-backend"] == "legacy"
    mismatch = page.locator(".mismatch[data-path='/api/me']").first
    expect(mismatch).to_contain_text("/display_name")
    expect(mismatch.locator("td.value.legacy").first).to_have_text("(absent)")
    expect(mismatch.locator("td.value.new").first).to_have_text('"Alice"')
    expect(page.locator("#shadow-rows tr[data-shadow-route='/api/me']")).to_be_visible()

    # Change catalog-books from the page: 0% sends everyone to legacy, 100% to catalog.
    row = page.locator("#flag-rows tr[data-flag='catalog-books']")
    for percentage, backend in ((0, "legacy"), (100, "catalog")):
        row.locator("select[name=mode]").select_option("canary")
        row.locator("input[name=percentage]").fill(str(percentage))
        row.locator("button.apply").click()
        expect(books).to_contain_text(f"catalog-books (canary {percentage}%)")
        assert api.get("/api/books").headers["x-gateway-backend"] == backend

        if percentage == 0:
            # The allow list: alice on catalog while everyone else stays on legacy.
            row.locator("input[name=allow_subjects]").fill("alice")
            row.locator("button.apply").click()
            assert eventually(
                lambda: api.get(CATALOG_FLAG, headers=bearer).json()["allow_subjects"] == ["alice"]
            )
            assert api.get("/api/books", headers=bearer).headers["x-gateway-backend"] == "catalog"
            assert api.get("/api/books").headers["x-gateway-backend"] == "legacy"
            row.locator("input[name=allow_subjects]").fill("")

    # Traffic shows in the route table: /api/books' new side has a rate now.
    for _ in range(20):
        api.get("/api/books")
        api.get("/api/me", headers=bearer)
    expect(books.locator("td.num").nth(4)).not_to_have_text("0.00")
    expect(page.locator("#shares [data-window='5m'] strong")).not_to_have_text("0.0%")
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        take_screenshot(page, api, bearer, REPO / os.environ["DASHBOARD_SCREENSHOT"])

    # The kill switch asks first: dismissed, nothing changes.
    kill = page.locator("#kill-switch")
    page.once("dialog", lambda dialog: dialog.dismiss())
    kill.click()
    assert api.get("/api/books").headers["x-gateway-backend"] == "catalog"
    # Accepted: every flagged route is on legacy at once.
    questions: list[str] = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    kill.click()
    expect(page.locator("#killed")).to_be_visible()
    assert "kill switch" in questions[0]
    assert api.get("/api/books").headers["x-gateway-backend"] == "legacy"
    expect(books.locator(".badge")).to_have_text("legacy only")
    # Lifted again from the page.
    page.once("dialog", lambda dialog: dialog.accept())
    kill.click()
    expect(page.locator("#killed")).to_be_hidden()
    assert api.get("/api/books").headers["x-gateway-backend"] == "catalog"

    # Each change was audited like the CLI's, naming alice and her session.
    audit = eventually(
        lambda: [e for e in gateway.log_events() if e.get("event") == "flags.changed"]
    )
    assert {e["actor"] for e in audit} == {"alice (session)"}
    assert [e["new"] for e in audit if e["flag"] == "*kill-switch*"] == [True, False]


def take_screenshot(
    page: sync_api.Page, api: httpx.Client, bearer: dict[str, str], path: Path
) -> None:
    """The README's picture: traffic spread over half a minute, so the plots have a few samples
    (one every 5 s) to draw; pacing the traffic is the point here, not synchronisation."""
    started = time.monotonic()
    while time.monotonic() - started < 30:
        for _ in range(8):
            api.get("/api/books")
        api.get("/api/books/1")
        api.get("/api/me", headers=bearer)
        api.get("/")
        time.sleep(0.2)
    sync_api.expect(page.locator("#plot-split polyline").first).to_be_visible()
    page.wait_for_timeout(2_500)  # one more poll, so the tiles show the last requests too
    page.screenshot(path=str(path), full_page=True)


# -- rollouts from the page ---------------------------------------------------------------------


@pytest.fixture
def rollout_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """The demo with GET /api/books' rollout analysed every half second, each step held a
    second: with no traffic, every verdict is "not enough data" and the step holds."""
    config = demo_config(tmp_path, flags=None)
    text = config.read_text()
    for old, new in (("hold = 60", "hold = 1"), ("interval = 5", "interval = 0.5")):
        assert old in text, old
        text = text.replace(old, new, 1)
    config.write_text(text)
    with GatewayProcess(config) as process:
        yield process


def test_rollouts_are_started_paused_resumed_and_aborted_from_the_page(
    rollout_gateway: GatewayProcess,
) -> None:
    expect = sync_api.expect
    base = rollout_gateway.base_url
    with browser_page() as page, httpx.Client(base_url=base) as api:
        errors = page_errors(page)
        sign_in_as_alice(page, base)
        assert page.goto(f"{base}/_gateway/").status == 200
        expect(page.locator("#rollout-rows")).to_contain_text("No rollout.")
        start = page.locator("#rollout-starts button[data-start='GET /api/books']")

        # Start asks first: dismissed, nothing starts.
        token = api.post("/api/token", json={"username": "alice", "password": "wonderland"})
        alice = {"Authorization": f"Bearer {token.json()['access_token']}"}
        page.once("dialog", lambda dialog: dialog.dismiss())
        start.click()
        assert api.get("/_gateway/api/rollouts", headers=alice).json() == {"rollouts": []}
        questions: list[str] = []
        page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
        start.click()
        row = page.locator("#rollout-rows tr[data-rollout='catalog-books']")
        status = row.locator(".badge")
        expect(status).to_have_text("running")
        assert "GET /api/books" in questions[0]
        assert "10, 50, 100" in questions[0]
        expect(row.locator("td.step")).to_have_text("1/3: 10%")
        expect(start).to_have_count(0)  # one rollout per flag at a time
        [shown] = api.get("/_gateway/api/rollouts", headers=alice).json()["rollouts"]
        assert (shown["flag"], shown["status"], shown["current"]) == (
            "catalog-books",
            "running",
            10,
        )
        # The controller's verdict shows, with why it holds.
        expect(row.locator("td.verdict")).to_contain_text("not enough data")

        row.locator("button[data-action=pause]").click()
        expect(status).to_have_text("paused")
        expect(row.locator("td.verdict")).to_have_text("paused by alice (session)")
        row.locator("button[data-action=resume]").click()
        expect(status).to_have_text("running")

        # Abort asks too; accepted, the flag is back on legacy for everyone.
        page.once("dialog", lambda dialog: dialog.accept())
        row.locator("button[data-action=abort]").click()
        expect(status).to_have_text("aborted")
        expect(row.locator("button")).to_have_count(0)
        assert eventually(lambda: api.get("/api/books").headers["x-gateway-backend"] == "legacy")
        expect(start).to_have_count(1)  # and a new one may start

    # Each change went through the admin API and was audited as alice's.
    audit = eventually(
        lambda: [
            e
            for e in rollout_gateway.log_events()
            if e.get("event") == "flags.changed" and e.get("actor") == "alice (session)"
        ]
    )
    reasons = [e.get("reason") for e in audit]
    assert reasons[0].startswith("rollout started: steps 10, 50, 100")
    assert "rollout aborted" in reasons
    assert errors == [], errors
