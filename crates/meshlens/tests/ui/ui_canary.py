"""The demo's failing canary as the pane shows it, in headless Chromium.

usage: ui_canary.py BASE_URL SCREENSHOT_DIR

Expects `meshlens demo --canary` after its rollout rolled back (tests/demo_canary.rs waits for
that): the Events view lists the rollout's start, steps and rollback and the judge's verdicts
with their badges and links to the moment's graph, metrics and traces; the topology's side
panel of http-lb-v2 shades the interval in which http-lb was anomalous on its charts. No
JavaScript error may be logged. Exits non-zero with a message on the first failure.
"""

import sys

import browser
from browser import fail

BASE, SHOTS = sys.argv[1].rstrip("/"), sys.argv[2]
WAIT = 60_000  # ms, for any one view or element
# The topology panel asks for the optional validations report; its 404 is not an error.
OPTIONAL = ("/api/v1/validations",)

UI = browser.Harness("ui-canary", BASE, SHOTS, optional=OPTIONAL, wait=WAIT, banners=False)
step, ready, shot = UI.step, UI.ready, UI.shot


def run(page):
    # 1. The timeline: the rollout from start to rollback, with the judge's verdicts.
    page.goto(f"{BASE}/#/events?range=1h")
    ready(page, "events")
    rollback = page.locator('tr.event-row[data-kind="rollout"]', has_text="rolled back")
    rollback.first.wait_for(timeout=WAIT)
    if page.locator('tr.event-row[data-kind="rollout"]', has_text="started").count() < 1:
        fail("the Events view lacks the rollout's start")
    verdicts = page.locator('tr.event-row[data-kind="verdict"]')
    if verdicts.count() < 2:
        fail(f"the Events view shows {verdicts.count()} verdicts, expected the pass and the failures")
    if page.locator('tr.event-row[data-kind="verdict"]', has_text="fail").count() < 1:
        fail("no failed verdict is shown")
    for link in ("a.ev-graph", "a.ev-traces"):
        if rollback.first.locator(link).count() != 1:
            fail(f"the rollback row has no {link} link")
    shot(page, "1-events-rollback")

    # 2. The anomaly on the charts of http-lb v2's panel.
    page.goto(f"{BASE}/#/topology?range=15m")
    ready(page, "topology")
    page.wait_for_selector('g.node[data-node-name="http-lb-v2"]', timeout=WAIT)
    page.click('g.node[data-node-name="http-lb-v2"]')
    page.wait_for_selector("aside.side-panel:not([hidden]) h2", timeout=WAIT)
    page.wait_for_selector("aside.side-panel rect.band-anomaly", state="attached", timeout=WAIT)
    shot(page, "2-panel-anomaly")
    step("events and anomaly marks shown")


if __name__ == "__main__":
    sys.exit(UI.launch(run))
