"""Browser check of native histograms in the meshlens web UI.

usage: ui_histograms.py BASE_URL SCREENSHOT_DIR METRIC COUNT BUCKETS

Expects a server holding the native histogram series METRIC whose newest histogram has COUNT
observations in BUCKETS buckets (zero bucket included). Checks that the Metrics table shows
the histogram's count and sum and draws one bar per bucket, each titled with its range, and
that the graph draws the histogram's count over time. No JavaScript error may be logged.
"""

import sys

import browser
from browser import fail

BASE, SHOTS, METRIC, COUNT, BUCKETS = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
WAIT = 30_000  # ms, for any one element
OPTIONAL = ("/api/v1/validations", "/api/v1/query_exemplars")

UI = browser.Harness("ui-histograms", BASE, SHOTS, optional=OPTIONAL, wait=WAIT, full_page=True)
step, goto, ready, shot = UI.step, UI.goto, UI.ready, UI.shot


def check_table(page):
    goto(page, f"metrics?q={METRIC}&tab=table")
    ready(page, "metrics")
    bars = page.locator("table.data svg.hist-bars rect.hist-bar")
    try:
        page.wait_for_function(
            "(n) => document.querySelectorAll('table.data svg.hist-bars rect.hist-bar').length === n",
            arg=BUCKETS, timeout=WAIT)
    except Exception:  # noqa: BLE001 - say what is drawn instead of a bare timeout
        fail(f"{bars.count()} bucket bars drawn, want {BUCKETS}; main says {page.inner_text('main')[:300]!r}")
    value = page.inner_text("table.data .hist-value")
    if f"count {COUNT}" not in value or "sum" not in value:
        fail(f"the value cell says {value!r}, want the count {COUNT} and the sum")
    titles = [bars.nth(i).locator("title").text_content() for i in range(bars.count())]
    if not all("," in t and ":" in t for t in titles):
        fail(f"bucket bars are not titled with their ranges: {titles}")
    shot(page, "1-histogram-table")
    step(f"the table shows {value!r} and {BUCKETS} bucket bars: {titles}")


def check_graph(page):
    goto(page, f"metrics?q={METRIC}&range=15m")
    ready(page, "metrics")
    try:
        page.wait_for_selector("figure.chart svg", timeout=WAIT)
    except Exception:  # noqa: BLE001
        fail(f"no chart; main says {page.inner_text('main')[:300]!r}")
    text = page.inner_text("main")
    if "histogram count" not in text:
        fail(f"the chart does not name the histogram's count: {text[:400]!r}")
    shot(page, "2-histogram-graph")
    step("the graph draws the histogram's count")


def run(page):
    check_table(page)
    check_graph(page)


if __name__ == "__main__":
    sys.exit(UI.launch(run, after=lambda: step("all histogram checks passed")))
