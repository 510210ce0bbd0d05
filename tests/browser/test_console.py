"""The web console at /ui in a real browser: Debian's headless Chromium driven by Playwright, against the
real `taskq serve` process tree with API keys on, over real HTTP and the real WebSocket stream.

One service and one browser serve the whole module (each test opens its own browser context, so no
key or page state crosses tests); each test's jobs carry ids of their own and the tests filter by them.
Jobs that must stay in a state while the browser looks block on a `release_file` the test creates
when it is done looking. Every wait is one of Playwright's auto-waiting `expect` assertions or
`wait_until`, each with a deadline.

Each page is photographed at 1280 and 360 px wide into TASKQ_SCREENSHOT_DIR (default
`.artifacts/screenshots`, kept by CI as an artifact); `make screenshots` points it at
`tests/browser/screenshots`, the pictures the README shows.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from tests.conftest import _SHARED_ROOTS, ROOT, PgServer, Service, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
BOOTSTRAP = "bootstrap-secret-for-the-console-tests-0123456789"
WAIT_MS = 20_000  # Playwright's deadline for each expectation, generous for a loaded 2-core machine
WIDTHS = (1280, 360)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium; .ci/run installs it)",
    ),
]


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("TASKQ_SCREENSHOT_DIR") or ROOT / ".artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def photograph(page: Page, name: str, *, dark: bool = False) -> None:
    """The page as it is now, at each width (and in dark mode too, when asked); the viewport goes back
    to 1280 px and light mode afterwards."""
    folder = screenshot_dir()
    for scheme in ("light", "dark") if dark else ("light",):
        page.emulate_media(color_scheme=scheme)
        suffix = "-dark" if scheme == "dark" else ""
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            path = folder / f"{name}{suffix}-{width}.png"
            page.screenshot(path=str(path), full_page=True, animations="disabled")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def console(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service the browser talks to: keys required (bootstrap key), a small node (2 CPU units) so
    that one blocking job can make the next one wait."""
    log = tmp_path_factory.mktemp("console") / "service.log"
    env = {"TASKQ_BOOTSTRAP_KEY": BOOTSTRAP, "TASKQ_CPU_UNITS": "2", "TASKQ_MEMORY_MB": "1024"}
    service = Service(pg.fresh_database(), log, env).start()
    service.http.headers["Authorization"] = f"Bearer {BOOTSTRAP}"
    _SHARED_ROOTS.add(service.pid)
    yield service
    _SHARED_ROOTS.discard(service.pid)
    code = service.stop()
    service.http.close()
    assert code == 0, f"taskq serve exited with {code}:\n{service.logs()}"


@pytest.fixture(scope="module")
def keys(console: Service) -> dict[str, str]:
    """An operator's key (every scope) and a read-only one, made through the API."""
    made = {}
    for name, scopes in (("operator", ["submit", "read", "admin"]), ("viewer", ["read"])):
        response = console.http.post("/keys", json={"name": name, "scopes": scopes})
        assert response.status_code == 201, response.text
        made[name] = response.json()["key"]
    return made


@pytest.fixture(scope="module")
def browser(console: Service) -> Iterator[Browser]:
    """One headless Chromium for the module. Playwright's driver and the browser are this process's
    children for the whole module, so they are declared shared, as a module's service is, to the
    check that no test leaves a process behind. The service comes first: Playwright's sync API runs an
    event loop in this thread, and the fixtures that make databases call asyncio.run."""
    from playwright.sync_api import sync_playwright

    before = {p.pid for p in psutil.Process().children()}
    manager = sync_playwright().start()
    started = {p.pid for p in psutil.Process().children()} - before
    _SHARED_ROOTS.update(started)
    try:
        launched = manager.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()
    finally:
        manager.stop()
        _SHARED_ROOTS.difference_update(started)


@pytest.fixture
def page(browser: Browser, console: Service) -> Iterator[Page]:
    """A fresh tab with its own session storage; fails the test on a script error or a CSP violation."""
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": WIDTHS[0], "height": 900}, base_url=console.base_url)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    tab.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    yield tab
    context.close()
    assert not problems, problems


@pytest.fixture
def ids() -> str:
    """A prefix for this test's job ids."""
    return f"ui-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------------------------- helpers


def sign_in(page: Page, key: str, where: str = "") -> None:
    from playwright.sync_api import expect

    page.goto(f"/ui{where}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="console")).to_be_visible()


def go(page: Page, hash_route: str) -> None:
    """Another page of the console, the way a link does it: no reload, the stream stays open."""
    page.evaluate("(route) => { location.hash = route; }", hash_route)


def submit(service: Service, **job: Any) -> dict[str, Any]:
    return service.submit(**job)


def failed_job(service: Service, job_id: str, **extra: Any) -> None:
    """A job whose only attempt fails (a re-drive's next attempt succeeds)."""
    retry = {"max_attempts": 1, "initial_delay_seconds": 0.1}
    submit(service, job_id=job_id, type="quick_task", payload={"fail_times": 1}, retry_config=retry, **extra)
    service.wait_status(job_id, "failed")


def badge_of(page: Page, container: str) -> Any:
    return page.locator(container).locator(".badge").first


# ------------------------------------------------------------------------------------------------- tests


def test_sign_in_keeps_the_key_in_the_tabs_session_storage_never_in_the_url(
    page: Page, console: Service, keys: dict[str, str]
) -> None:
    from playwright.sync_api import expect

    answer = page.goto("/ui")
    assert answer is not None
    assert answer.ok
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    expect(page.get_by_role("heading", name="Sign in to taskq")).to_be_visible()
    photograph(page, "login")

    page.get_by_label("API key").fill("tq_000000000000_" + "A" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")

    page.get_by_label("API key").fill(keys["operator"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#live")).to_have_text("live")  # the stream took the key from the subprotocol
    assert page.evaluate("sessionStorage.getItem('taskq.key')") == keys["operator"]
    assert keys["operator"] not in page.url
    expect(page.locator("#who")).to_contain_text("submit, read, admin")

    page.reload()  # same tab: still signed in
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to taskq")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('taskq.key')") is None


def test_a_key_revoked_while_the_page_is_open_sends_it_back_to_sign_in(
    page: Page, console: Service, keys: dict[str, str]
) -> None:
    from playwright.sync_api import expect

    made = console.http.post("/keys", json={"name": "short-lived", "scopes": ["read"]}).json()
    sign_in(page, made["key"])
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()

    assert console.http.delete(f"/keys/{made['key_id']}").status_code == 204
    refused = {"Authorization": f"Bearer {made['key']}"}
    wait_until(lambda: console.http.get("/stats", headers=refused).status_code == 401, what="the revoke in force")
    go(page, "#/jobs")  # the page's next call is refused

    expect(page.get_by_role("heading", name="Sign in to taskq")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("no longer valid")
    assert page.evaluate("sessionStorage.getItem('taskq.key')") is None


def test_the_overview_shows_capacity_counts_and_recent_throughput_live(
    page: Page, console: Service, keys: dict[str, str], ids: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    sign_in(page, keys["operator"])
    expect(page.get_by_text("CPU units")).to_be_visible()
    running = page.locator('[data-count="running"] .tile-count')
    expect(running).to_have_text("0")

    release = tmp_path / "release"
    submit(console, job_id=f"{ids}-hold", type="quick_task", payload={"release_file": str(release)})

    # Without a reload: the stream's events make the page read /stats again.
    expect(running).to_have_text("1")
    expect(page.locator(".gauge").first).to_contain_text("1 / 2 units")
    release.touch()
    console.wait_status(f"{ids}-hold", "succeeded")
    expect(running).to_have_text("0")
    expect(page.locator('[data-total="succeeded"]')).not_to_have_text("0 succeeded")
    expect(page.locator('.chart .bar-ok:not([height="0"])')).not_to_have_count(0)  # its minute's bar
    photograph(page, "overview", dark=True)


def test_a_job_goes_from_pending_to_succeeded_in_the_jobs_table_without_a_reload(
    page: Page, console: Service, keys: dict[str, str], ids: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    release = tmp_path / "release"
    # Holds the whole node (2 CPU units), so the watched job waits as pending.
    blocker = f"{ids}-blocker"
    submit(
        console,
        job_id=blocker,
        type="quick_task",
        payload={"release_file": str(release)},
        resource_requirements={"cpu_units": 2, "memory_mb": 128},
    )
    console.wait_status(blocker, "running")
    try:
        sign_in(page, keys["operator"], f"#/jobs?id_prefix={ids}-watched")
        expect(page.get_by_text("No job matches.")).to_be_visible()
        page.evaluate("window.__sameDocument = true")

        watched = f"{ids}-watched"
        submit(console, job_id=watched, type="quick_task")
        row = page.locator(f'tr[data-job="{watched}"]')
        expect(row.locator(".badge")).to_have_text("pending")
        photograph(page, "jobs")

        release.touch()
        expect(row.locator(".badge")).to_have_text("succeeded")
        assert page.evaluate("window.__sameDocument") is True  # never reloaded
        assert console.job(watched)["status"] == "succeeded"
    finally:
        release.touch()
        console.wait_status(blocker, "succeeded")


def test_the_jobs_table_filters_by_status_type_priority_and_id_prefix(
    page: Page, console: Service, keys: dict[str, str], ids: str
) -> None:
    from playwright.sync_api import expect

    submit(console, job_id=f"{ids}-a", type="report", priority="high", run_at="2999-01-01T00:00:00Z")
    submit(console, job_id=f"{ids}-b", type="quick_task", priority="low", run_at="2999-01-01T00:00:00Z")
    sign_in(page, keys["operator"], f"#/jobs?id_prefix={ids}&limit=1")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job", f"{ids}-b")  # newest first
    page.get_by_role("button", name="Load more").click()  # the next page, through the API's cursor
    expect(rows).to_have_count(2)
    expect(rows.last).to_have_attribute("data-job", f"{ids}-a")
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()

    page.get_by_label("Priority").select_option("high")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job", f"{ids}-a")
    assert "priority=high" in page.url

    page.get_by_label("Priority").select_option("")
    page.get_by_label("Type").fill("quick_task")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job", f"{ids}-b")

    page.get_by_label("Status").select_option("running")
    expect(page.get_by_text("No job matches.")).to_be_visible()
    for job in ("a", "b"):
        assert console.http.patch(f"/jobs/{ids}-{job}/cancel").status_code == 200


def test_a_failed_jobs_page_explains_it_draws_its_graph_and_re_drives_it(
    page: Page, console: Service, keys: dict[str, str], ids: str
) -> None:
    from playwright.sync_api import expect

    parent, child = f"{ids}-sync", f"{ids}-report"
    failed_job(console, parent)
    submit(console, job_id=child, type="report", depends_on=[parent])
    console.wait_status(child, "upstream_failed")

    sign_in(page, keys["operator"], f"#/jobs/{parent}")
    expect(badge_of(page, ".job-title")).to_have_text("failed")
    attempt = page.locator('tr[data-attempt="1"]')
    expect(attempt).to_contain_text("failed")
    expect(attempt).to_contain_text("pid ")
    expect(attempt).to_contain_text("simulated transient failure")
    node = page.locator(f'svg.graph a[data-node="{child}"]')
    expect(node).to_have_class("node st-upstream_failed")
    expect(page.locator(".log")).to_contain_text("simulated transient failure")
    photograph(page, "job", dark=True)

    page.get_by_role("button", name="Re-drive").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Re-drive {parent}?")
    dialog.get_by_role("button", name="Re-drive").click()

    expect(badge_of(page, ".job-title")).to_have_text("succeeded")
    expect(page.locator('tr[data-attempt="2"]')).to_contain_text("succeeded")
    expect(node).to_have_class("node st-succeeded")  # the child ran after its parent, drawn live
    expect(page.get_by_role("button", name="Re-drive")).to_have_count(0)

    node.click()  # the graph's nodes are links
    expect(page.locator(".job-title")).to_contain_text(child)
    expect(page.locator(f'svg.graph [data-node="{parent}"]')).to_have_class("node st-succeeded")


def test_a_waiting_job_is_explained_in_words(page: Page, console: Service, keys: dict[str, str], ids: str) -> None:
    from playwright.sync_api import expect

    submit(console, job_id=f"{ids}-later", type="report", run_at="2999-01-01T00:00:00Z")
    submit(console, job_id=f"{ids}-after", type="report", depends_on=[f"{ids}-later"])
    sign_in(page, keys["operator"], f"#/jobs/{ids}-after")

    explain = page.locator("ul.explain")
    expect(explain).to_contain_text(f"It waits for {ids}-later to succeed.")
    go(page, f"#/jobs/{ids}-later")
    expect(explain).to_contain_text("Expected to become ready at")
    assert console.http.patch(f"/jobs/{ids}-later/cancel").status_code == 200
    expect(badge_of(page, ".job-title")).to_have_text("cancelled")
    expect(explain).to_be_hidden()


def test_cancelling_a_running_job_from_its_page_stops_it(
    page: Page, console: Service, keys: dict[str, str], ids: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    job_id = f"{ids}-long"
    never = tmp_path / "never-created"  # the job runs until it is cancelled
    submit(console, job_id=job_id, type="quick_task", payload={"release_file": str(never)})
    console.wait_status(job_id, "running")

    sign_in(page, keys["operator"], f"#/jobs/{job_id}")
    expect(badge_of(page, ".job-title")).to_have_text("running")
    expect(page.locator(".log")).to_contain_text("started")
    expect(page.get_by_text("(following)")).to_be_visible()

    page.get_by_role("button", name="Cancel").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("The running attempt is stopped")
    dialog.get_by_role("button", name="Cancel job").click()

    expect(badge_of(page, ".job-title")).to_have_text("cancelled")
    expect(page.locator('tr[data-attempt="1"]')).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(page.locator(".log")).to_contain_text("cancelled")
    assert console.job(job_id)["status"] == "cancelled"


def test_a_read_only_key_sees_no_action_buttons(
    page: Page, console: Service, keys: dict[str, str], ids: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    failed = f"{ids}-failed"
    failed_job(console, failed)
    release = tmp_path / "release"
    running = f"{ids}-running"
    submit(console, job_id=running, type="quick_task", payload={"release_file": str(release)})
    console.wait_status(running, "running")
    try:
        sign_in(page, keys["viewer"], f"#/jobs/{failed}")
        expect(page.locator("#who")).to_contain_text("read")
        expect(badge_of(page, ".job-title")).to_have_text("failed")
        expect(page.locator('tr[data-attempt="1"]')).to_be_visible()
        expect(page.get_by_role("button", name="Re-drive")).to_have_count(0)
        expect(page.get_by_role("link", name="Dead letters")).to_be_hidden()

        go(page, f"#/jobs/{running}")
        expect(badge_of(page, ".job-title")).to_have_text("running")
        expect(page.get_by_role("button", name="Cancel")).to_have_count(0)

        go(page, "#/dlq")
        expect(page.get_by_text("needs a key with the admin scope")).to_be_visible()
        go(page, "#/types")
        expect(page.get_by_role("heading", name="Types")).to_be_visible()
        expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    finally:
        release.touch()
        console.wait_status(running, "succeeded")


def test_the_dead_letter_queue_re_drives_a_selection_after_confirmation(
    page: Page, console: Service, keys: dict[str, str], ids: str
) -> None:
    from playwright.sync_api import expect

    first, second = f"{ids}-one", f"{ids}-two"
    failed_job(console, first)
    failed_job(console, second)

    sign_in(page, keys["operator"], "#/dlq")
    for job_id in (first, second):
        row = page.locator(f'tr[data-job="{job_id}"]')
        expect(row).to_contain_text("simulated transient failure 1 of 1")
        row.get_by_role("checkbox").check()
    photograph(page, "dlq")
    redrive = page.get_by_role("button", name="Re-drive selected (2)")

    redrive.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Re-drive 2 jobs?")
    dialog.get_by_role("button", name="Keep as is").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(f'tr[data-job="{first}"]')).to_be_visible()
    assert console.job(first)["status"] == "failed"  # declined: nothing was sent

    redrive.click()
    dialog.get_by_role("button", name="Re-drive 2 jobs").click()
    expect(page.get_by_text("Re-drove 2 jobs.")).to_be_visible()
    for job_id in (first, second):
        expect(page.locator(f'tr[data-job="{job_id}"]')).to_have_count(0)
        console.wait_status(job_id, "succeeded")


def test_pausing_a_type_holds_its_jobs(page: Page, console: Service, keys: dict[str, str], ids: str) -> None:
    from playwright.sync_api import expect

    kind = "data_export"  # a type no other test of the module submits
    sign_in(page, keys["operator"], "#/types")
    row = page.locator(f'tr[data-type="{kind}"]')
    try:
        row.get_by_role("button", name="Pause").click()
        expect(row.locator(".badge")).to_have_text("paused")
        photograph(page, "types")

        held = f"{ids}-held"
        submit(console, job_id=held, type=kind)
        go(page, f"#/jobs/{held}")
        expect(badge_of(page, ".job-title")).to_have_text("pending")
        expect(page.locator("ul.explain")).to_contain_text("paused")

        go(page, "#/types")
        row.get_by_role("button", name="Resume").click()
        expect(row.locator(".badge")).to_have_text("active")
        console.wait_status(held, "succeeded")
    finally:
        with contextlib.suppress(Exception):
            console.http.patch(f"/types/{kind}", json={"paused": False})


def test_a_schedule_is_listed_and_paused(page: Page, console: Service, keys: dict[str, str], ids: str) -> None:
    from playwright.sync_api import expect

    schedule_id = f"{ids}-yearly"
    created = console.http.post(
        "/schedules",
        json={"schedule_id": schedule_id, "cron": "0 0 1 1 *", "timezone": "UTC", "job": {"type": "report"}},
    )
    assert created.status_code == 201, created.text
    try:
        sign_in(page, keys["operator"], "#/schedules")
        row = page.locator(f'tr[data-schedule="{schedule_id}"]')
        expect(row).to_contain_text("0 0 1 1 *")
        expect(row.locator("time").first).to_be_visible()  # the next fire times
        row.get_by_role("button", name="Pause").click()
        expect(row.locator(".badge")).to_have_text("paused")
        photograph(page, "schedules")
        assert console.http.get(f"/schedules/{schedule_id}").json()["paused"] is True
    finally:
        console.http.delete(f"/schedules/{schedule_id}")


def test_the_console_files_are_versioned_and_cached_for_good(console: Service) -> None:
    """No browser needed: the headers a browser caches by."""
    index = console.http.get("/ui", headers={"Authorization": ""})
    assert index.status_code == 200
    assert index.headers["cache-control"] == "no-cache"
    version = index.text.split("/ui/", 2)[1].split("/", 1)[0]
    script = console.http.get(f"/ui/{version}/app.js", headers={"Authorization": ""})
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "immutable" in script.headers["cache-control"]
    again = console.http.get(f"/ui/{version}/app.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304
    stale = console.http.get("/ui/0000000000000000/app.js")
    assert stale.status_code == 404
    assert stale.headers["content-type"].startswith("application/problem+json")
