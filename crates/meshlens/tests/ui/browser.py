"""The harness every browser check in this folder shares (imported as `browser`; the scripts
are run as `python3 tests/ui/ui_x.py`, so their own folder is first on sys.path).

It launches Debian's headless Chromium through Playwright, collects JavaScript errors (page
errors and console errors, less the failed loads a script expects), offers the small page
helpers the scripts use (step, goto, ready, shot) and turns the outcome into an exit code:
0 only if the run raised nothing and no JavaScript error was logged.
"""

import os
import sys
import traceback

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def fail(msg):
    """Ends the run with `msg` (the harness reports it and exits non-zero)."""
    raise AssertionError(msg)


class Harness:
    """One browser check: its log prefix, the server's base URL and where screenshots go.

    `optional` lists API paths whose 404 the UI explains (not an error); `allow_status` lists
    HTTP statuses whose failed loads are expected anywhere (e.g. "401" without a tenant).
    `wait` (ms) bounds `ready`; `full_page` and `banners` say how `shot` captures and whether
    it first fails on an error banner in the view."""

    def __init__(self, prefix, base, shots, *, optional=(), allow_status=(), wait=60_000,
                 full_page=False, banners=True, viewport=(1280, 800)):
        self.prefix = prefix
        self.base = base.rstrip("/")
        self.shots = shots
        self.optional = tuple(optional)
        self.allow_status = tuple(allow_status)
        self.wait = wait
        self.full_page = full_page
        self.banners = banners
        self.viewport = {"width": viewport[0], "height": viewport[1]}
        self.errors = []
        os.makedirs(shots, exist_ok=True)

    def step(self, msg):
        print(f"{self.prefix}: {msg}", flush=True)

    def on_console(self, msg):
        if msg.type != "error":
            return
        loc = (msg.location or {}).get("url", "")
        if "Failed to load resource" in msg.text:
            # Chromium logs every non-2xx fetch; some are the UI's expected answers.
            if "404" in msg.text and any(p in loc for p in self.optional):
                return
            if any(s in msg.text for s in self.allow_status):
                return
        self.errors.append(f"console error: {msg.text} at {loc}")

    def goto(self, page, hash_):
        page.goto(f"{self.base}/#/{hash_}")

    def ready(self, page, view):
        page.wait_for_selector(f'main[data-view="{view}"][data-state="ready"]', timeout=self.wait)

    def no_error_banner(self, page, where):
        banners = page.locator("main .msg-error")
        if banners.count():
            fail(f"{where} shows an error: {banners.all_inner_texts()}")

    def shot(self, page, name):
        if self.banners:
            self.no_error_banner(page, name)
        path = os.path.join(self.shots, f"{name}.png")
        page.screenshot(path=path, full_page=self.full_page)
        self.step(f"screenshot {path}")

    def launch(self, run, after=None):
        """Runs `run(page)` in a fresh Chromium page, then fails on any JavaScript error, then
        calls `after()` (checks over what the run collected). Returns the exit code."""
        try:
            with sync_playwright() as p:
                chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = chromium.new_page(viewport=self.viewport)
                page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
                page.on("console", self.on_console)
                try:
                    run(page)
                except Exception:
                    self._failure_shot(page)
                    raise
                finally:
                    chromium.close()
            if self.errors:
                fail("JavaScript errors:\n  " + "\n  ".join(self.errors))
            if after is not None:
                after()
        except Exception as e:  # noqa: BLE001 - report any failure for the Rust test
            traceback.print_exc()
            print(f"{self.prefix}: FAILED: {e}", file=sys.stderr)
            if self.errors:
                print(f"{self.prefix}: JavaScript errors so far:\n  " + "\n  ".join(self.errors),
                      file=sys.stderr)
            return 1
        return 0

    def _failure_shot(self, page):
        """The page as it was when the run failed, for the one reading the report."""
        path = os.path.join(self.shots, "failure.png")
        try:
            page.screenshot(path=path, full_page=True)
            print(f"{self.prefix}: failure screenshot {path}", file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - the page may be gone; the failure itself matters
            pass
