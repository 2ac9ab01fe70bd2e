"""Browser check of exemplars in the meshlens web UI.

usage: ui_exemplars.py BASE_URL SCREENSHOT_DIR COUNTER_TRACES EDGE_TRACES

Expects the server of tests/ui_exemplars_browser.rs: `shop_requests_total` with one exemplar
per trace of COUNTER_TRACES (comma-separated ids), and `frontend` calling `checkout` with
exemplars on the edge's request-duration histogram naming EDGE_TRACES (the last one the
slowest); every trace's spans are stored. Checks that the Metrics chart draws one marker per
exemplar, each a link to its trace, that clicking one opens the trace view on that trace, and
that the topology's edge panel lists the edge's exemplar traces slowest first, each opening its
trace. No JavaScript error may be logged. Exits non-zero on the first failure.
"""

import sys
import urllib.parse

import browser
from browser import fail

BASE, SHOTS = sys.argv[1].rstrip("/"), sys.argv[2]
COUNTER_TRACES = sys.argv[3].split(",")
EDGE_TRACES = sys.argv[4].split(",")
WAIT = 30_000  # ms, for any one element
OPTIONAL = ("/api/v1/validations",)

UI = browser.Harness("ui-exemplars", BASE, SHOTS, optional=OPTIONAL, wait=WAIT, full_page=True)
step, goto, ready, shot = UI.step, UI.goto, UI.ready, UI.shot


def trace_of(href):
    query = href.split("?", 1)[1] if "?" in href else ""
    return urllib.parse.parse_qs(query).get("trace", [""])[0]


def check_trace_view(page, trace):
    page.wait_for_function(
        "(id) => location.hash.includes('trace=' + id)", arg=trace, timeout=WAIT)
    ready(page, "traces")
    page.wait_for_selector(".waterfall", timeout=WAIT)
    text = page.inner_text("main")
    if trace not in text or "checkout" not in text:
        fail(f"the trace view does not show trace {trace} with its spans: {text[:300]!r}")


def check_chart(page):
    goto(page, "metrics?q=shop_requests_total&range=15m")
    ready(page, "metrics")
    marks = page.locator("figure.chart svg a.exemplar")
    try:
        page.wait_for_function(
            "(n) => document.querySelectorAll('figure.chart svg a.exemplar').length === n",
            arg=len(COUNTER_TRACES), timeout=WAIT)
    except Exception:  # noqa: BLE001 - say what is drawn instead of a bare timeout
        fail(f"{marks.count()} exemplar markers drawn, want {len(COUNTER_TRACES)}; "
             f"main says {page.inner_text('main')[:300]!r}")
    linked = sorted(trace_of(marks.nth(i).get_attribute("href")) for i in range(marks.count()))
    if linked != sorted(COUNTER_TRACES):
        fail(f"the markers link to {linked}, want {sorted(COUNTER_TRACES)}")
    key = page.inner_text("figure.chart .exemplar-key")
    if f"{len(COUNTER_TRACES)} exemplars" not in key:
        fail(f"the chart's key says {key!r}")
    box = marks.first.bounding_box()
    if not box or box["width"] <= 0:
        fail("the first exemplar marker is not visible")
    shot(page, "1-metrics-exemplars")
    first = trace_of(marks.first.get_attribute("href"))
    marks.first.click()
    check_trace_view(page, first)
    shot(page, "2-exemplar-trace")
    step(f"chart markers link to {linked}; the first opens its trace")


def check_edge_panel(page):
    goto(page, "topology?range=15m")
    ready(page, "topology")
    edge = page.locator('g.edge[data-target*="checkout"]').first
    edge.wait_for(timeout=WAIT)
    edge.focus()
    page.keyboard.press("Enter")
    links = page.locator("aside.side-panel:not([hidden]) a.exemplar-trace")
    try:
        page.wait_for_function(
            "(n) => document.querySelectorAll('aside.side-panel:not([hidden]) a.exemplar-trace').length === n",
            arg=len(EDGE_TRACES), timeout=WAIT)
    except Exception:  # noqa: BLE001
        panel = page.locator("aside.side-panel:not([hidden])")
        fail(f"{links.count()} exemplar traces listed, want {len(EDGE_TRACES)}; "
             f"panel says {panel.inner_text()[:400] if panel.count() else '(no panel)'!r}")
    order = [trace_of(links.nth(i).get_attribute("href")) for i in range(links.count())]
    if order != list(reversed(EDGE_TRACES)):
        fail(f"edge exemplar traces listed as {order}, want slowest first {list(reversed(EDGE_TRACES))}")
    shot(page, "3-edge-exemplars")
    links.first.click()
    check_trace_view(page, EDGE_TRACES[-1])
    step(f"edge panel lists {order}, slowest first; the first opens its trace")


def run(page):
    check_chart(page)
    check_edge_panel(page)


if __name__ == "__main__":
    sys.exit(UI.launch(run, after=lambda: step("all exemplar checks passed")))
