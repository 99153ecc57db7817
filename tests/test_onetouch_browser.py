"""End to end in a real headless Chromium: the example server, the emailed link, the three pages.

Runs examples/onetouch_server.py on loopback (which also checks the example
works as documented) and drives Debian's /usr/bin/chromium with Playwright.
Playwright never downloads a browser here. Without Chromium the test is
skipped, unless CLOSELOOP_REQUIRE_ALL=1 (as in .ci/run), where it fails.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from attrs import frozen

from closeloop import StatusChanged
from closeloop.storage import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
#: Only there so a broken server fails the test instead of hanging it; nothing is
#: asserted about how long anything takes.
HANG_GUARD = 60.0
TYPED = "Refunded by phone <script>alert('typed')</script>"


def require(what: str, available: bool) -> None:
    """Skip without ``what``, or fail when CLOSELOOP_REQUIRE_ALL=1 says nothing may be skipped."""
    if available:
        return
    if os.environ.get("CLOSELOOP_REQUIRE_ALL") == "1":
        pytest.fail(f"{what} is required (CLOSELOOP_REQUIRE_ALL=1) but missing")
    pytest.skip(f"{what} is missing; install it (apt-get install chromium) to run this test")


@frozen
class Server:
    """The running example: its base URL, the emailed Change link, the case, the database."""

    base_url: str
    link: str
    case_id: str
    email: str
    db: Path


def pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Copy the server's output lines into a queue; None marks its end."""
    for line in stream:
        lines.put(line)
    lines.put(None)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """examples/onetouch_server.py on a free loopback port, stopped (and checked) afterwards."""
    db = tmp_path / "onetouch.db"
    stderr = (tmp_path / "server.log").open("w")
    with subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "onetouch_server.py"), "--port", "0",
         "--db", str(db)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"},
    ) as process:
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=pump, args=(process.stdout, lines), daemon=True)
        reader.start()
        output = ""
        try:
            while "Change: " not in output:
                try:
                    line = lines.get(timeout=HANG_GUARD)
                except queue.Empty:
                    pytest.fail(f"the example printed no Change link; output so far:\n{output}")
                if line is None:
                    pytest.fail(f"the example stopped early:\n{output}\n"
                                f"{(tmp_path / 'server.log').read_text()}")
                output += line
            serving = re.search(r"Serving the one-touch pages on (http://127\.0\.0\.1:\d+/\S+)",
                                output)
            link = re.search(r"^Change: (http://127\.0\.0\.1:\d+/\S+)$", output, re.M)
            case = re.search(r"^Case (\S+) opened and assigned to alice", output, re.M)
            assert serving and link and case, output
            yield Server(serving.group(1), link.group(1), case.group(1), output, db)
        finally:
            process.terminate()
            returncode = process.wait(HANG_GUARD)
            reader.join(HANG_GUARD)
            stderr.close()
    assert returncode == 0, (tmp_path / "server.log").read_text()  # SIGTERM stops it cleanly


def test_example_prints_the_email_with_its_link(server: Server) -> None:
    """The example prints alice's email: subject, case details and the one-touch Change link."""
    assert "To: alice\n" in server.email
    assert "Subject: c-42 · Normal priority · assigned to you by bob\n" in server.email
    assert f"Case: {server.case_id}\n" in server.email
    assert server.link.startswith(f"{server.base_url}?token=")


def back_and_resubmit(page: Any) -> None:
    """Press Back from the done page and, if the confirm page reappears, press Confirm again."""
    from playwright.sync_api import Error

    try:
        page.go_back()
    except Error:
        return  # the browser refused to show a no-store POST result again: nothing resent
    confirm = page.get_by_role("button", name="Confirm")
    if confirm.count():
        confirm.click()
        page.wait_for_load_state()


@pytest.mark.slow
def test_change_a_case_from_the_emailed_link(server: Server) -> None:
    """Open the link, choose Closed, comment, confirm, see Done; the link then says "already used"."""
    require("Debian's chromium at /usr/bin/chromium", CHROMIUM.exists())
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        require("the playwright Python package", False)
        raise

    dialogs: list[str] = []
    csp_reports: list[str] = []

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            csp_reports.append(message.text)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                          has_touch=True)
            page = context.new_page()
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.on("console", on_console)

            response = page.goto(server.link)
            assert response is not None and response.status == 200
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["referrer-policy"] == "no-referrer"
            expect(page.locator("h1")).to_have_text(f"Update case {server.case_id}")
            # Fits a phone's width: nothing makes the browser zoom out or scroll sideways.
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            # The customer's <script> is on the page as text, not run.
            expect(page.locator("main")).to_contain_text(
                "The parcel arrived broken <script>alert(1)</script>")

            page.get_by_label("Closed").check()
            page.get_by_label("Comment (required)").fill(TYPED)
            page.get_by_role("button", name="Continue").click()

            expect(page.locator("h1")).to_have_text("Confirm the change")
            expect(page.locator("main")).to_contain_text(
                f"Change case #{server.case_id} from Open to Closed with comment:")
            expect(page.locator("blockquote")).to_have_text(TYPED)
            assert server.link.split("token=")[1] not in page.url

            page.get_by_role("button", name="Confirm").click()
            expect(page.locator("h1")).to_have_text("Done")
            expect(page.locator("main")).to_contain_text(f"Case #{server.case_id} is now Closed")
            # The confirm POST was answered with a redirect: the done page is a GET, so a
            # reload repeats nothing, and Back leads to pages that can no longer act.
            assert "?done=" in page.url and "token=" not in page.url
            reloaded = page.reload()
            assert reloaded is not None and reloaded.status == 200
            expect(page.locator("main")).to_contain_text(f"Case #{server.case_id} is now Closed")
            back_and_resubmit(page)

            # Tapping the link in the email again opens it afresh, in a new tab: the old
            # tab may still be settling on the browser's own "resubmit?" error page.
            again_page = context.new_page()
            again = again_page.goto(server.link)
            assert again is not None and again.status == 409
            expect(again_page.locator("h1")).to_have_text("This link has already been used")
            context.close()
        finally:
            browser.close()

    assert dialogs == []  # no script ever ran
    assert csp_reports == []  # the page's own style was allowed, nothing else was tried
    store = SQLiteStore(server.db)
    try:
        changes = [e for e in store.history(server.case_id) if isinstance(e, StatusChanged)]
    finally:
        store.close()
    assert [(e.actor, e.via, e.to_status.value, e.comment) for e in changes] == [
        ("alice", "one-touch", "closed", TYPED)]
