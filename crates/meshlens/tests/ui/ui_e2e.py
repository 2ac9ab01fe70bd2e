"""End-to-end browser check of the meshlens web UI against a running `meshlens demo`.

usage: ui_e2e.py BASE_URL SCREENSHOT_DIR

Drives Debian's headless Chromium with Playwright: every view loads at 1280x800 and shows the
demo's data, the links between views work, and no JavaScript error is logged. Screenshots of
every view are written to SCREENSHOT_DIR. Exits non-zero with a message on the first failure.
"""

import os
import sys
import traceback
import urllib.parse

from playwright.sync_api import sync_playwright

BASE, SHOTS = sys.argv[1].rstrip("/"), sys.argv[2]
os.makedirs(SHOTS, exist_ok=True)

# Workloads the demo's Istio metrics show (snort-ids only receives mirrored traffic, which
# proxies report as traces, so it is checked among the trace services).
METRIC_SERVICES = [
    "istio-ingressgateway", "proxy-access-control", "http-lb-v1", "http-lb-v2",
    "clover-server1", "clover-server2", "clover-server3",
]
TRACE_SERVICES = METRIC_SERVICES[1:] + ["snort-ids"]
# Endpoints the UI falls back from when a server does not have them; their 404 is expected.
OPTIONAL = ("/api/v1/graph", "/api/v1/stats", "/api/v1/validations")
WAIT = 60_000  # ms, for any one view or element

errors = []


def step(msg):
    print(f"ui: {msg}", flush=True)


def fail(msg):
    raise AssertionError(msg)


def on_console(msg):
    if msg.type != "error":
        return
    loc = (msg.location or {}).get("url", "")
    if "Failed to load resource" in msg.text and "404" in msg.text and any(p in loc for p in OPTIONAL):
        return
    errors.append(f"console error: {msg.text} at {loc}")


def ready(page, view):
    page.wait_for_selector(f'main[data-view="{view}"][data-state="ready"]', timeout=WAIT)


def shot(page, name):
    path = os.path.join(SHOTS, f"{name}.png")
    page.screenshot(path=path, full_page=False)
    step(f"screenshot {path}")


def goto(page, hash_):
    page.goto(f"{BASE}/#/{hash_}")


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("console", on_console)
        try:
            run(page)
        finally:
            browser.close()
    if errors:
        fail("JavaScript errors:\n  " + "\n  ".join(errors))
    step("all views passed")


def run(page):
    # Assets: content types and the page shell.
    r = page.request.get(f"{BASE}/ui/js/app.js")
    if r.status != 200 or "javascript" not in r.headers.get("content-type", ""):
        fail(f"/ui/js/app.js: {r.status} {r.headers.get('content-type')}")

    # 1. Overview: every demo workload, with health and rates.
    goto(page, "overview?range=15m")
    ready(page, "overview")
    page.wait_for_selector("table.data tbody tr a.svc-link", timeout=WAIT)
    names = page.locator("table.data tbody a.svc-link").all_inner_texts()
    missing = [s for s in METRIC_SERVICES if not any(n.split(" ")[0] == s for n in names)]
    if missing:
        fail(f"overview lacks {missing}; shows {names}")
    if page.locator("table.data .health").count() < len(METRIC_SERVICES):
        fail("overview rows lack health badges")
    shot(page, "1-overview")

    # The shared range is kept in the URL and carried by the navigation.
    page.select_option("#f-range", "1h")
    page.wait_for_function("location.hash.includes('range=1h')", timeout=WAIT)
    ready(page, "overview")
    href = page.get_attribute("#nav-topology", "href")
    if "range=1h" not in href:
        fail(f"navigation does not carry the range: {href}")

    # 2. Topology: a node per demo workload, labelled; side panel; traces link.
    page.click("#nav-topology")
    ready(page, "topology")
    for s in METRIC_SERVICES:
        page.wait_for_selector(f'g.node[data-node-name="{s}"]', timeout=WAIT)
    labels = page.locator("g.node .node-name").all_text_contents()
    if not any("http-lb-v1" in l for l in labels):
        fail(f"node labels missing: {labels}")
    if page.locator("g.edge").count() < 6:
        fail("topology has fewer than 6 edges")
    if page.locator("g.app-group").count() < 1:
        fail("http-lb's versions are not grouped")
    shot(page, "2-topology")
    page.check('input[name="edge-label"][value="error"]')
    page.wait_for_function("location.hash.includes('edge=error')", timeout=WAIT)
    page.wait_for_function(
        "[...document.querySelectorAll('.edge-label')].some(t => t.textContent.includes('%'))", timeout=WAIT)
    page.click('g.node[data-node-name="http-lb-v1"]')
    page.wait_for_selector("aside.side-panel:not([hidden]) h2", timeout=WAIT)
    page.wait_for_selector("aside.side-panel .chart-svg .series", state="attached", timeout=WAIT)
    page.wait_for_selector("aside.side-panel ul.bars li", timeout=WAIT)
    title = page.inner_text("aside.side-panel h2")
    if "http-lb-v1" not in title:
        fail(f"side panel shows {title!r}")
    shot(page, "3-topology-panel")
    page.click("aside.side-panel a.traces-link")
    ready(page, "traces")
    if "service=http-lb-v1" not in page.evaluate("location.hash"):
        fail(f"traces link lost the node: {page.evaluate('location.hash')}")
    page.wait_for_selector("table.data tbody a.trace-link", timeout=WAIT)
    page.wait_for_function("document.querySelector('#trace-service').value === 'http-lb-v1'", timeout=WAIT)
    if page.locator(".scatter .pt").count() < 1:
        fail("no points in the trace scatter")
    shot(page, "4-traces")

    # 3. A trace: waterfall, critical path, span details, service link to the graph.
    goto(page, "traces?service=istio-ingressgateway&range=15m&limit=100")
    ready(page, "traces")
    page.wait_for_selector("table.data tbody a.trace-link", timeout=WAIT)
    # Open the trace with the most spans.
    page.click("th button:has-text('Spans')")
    page.locator("table.data tbody a.trace-link").first.click()
    page.wait_for_selector(".waterfall .wf-row[data-span-id]", timeout=WAIT)
    rows = page.locator(".waterfall .wf-row[data-span-id]").count()
    if rows < 4:
        fail(f"waterfall has {rows} spans")
    if page.locator(".waterfall .wf-row.crit").count() < 1:
        fail("no critical path marked")
    page.locator(".waterfall button.span-toggle").first.click()
    page.wait_for_selector(".wf-details:not([hidden]) table.kv", timeout=WAIT)
    shot(page, "5-trace-waterfall")
    link = page.locator(".waterfall a.svc-link", has_text="proxy-access-control").first
    link.click()
    ready(page, "topology")
    page.wait_for_selector('g.node.selected[data-node-name="proxy-access-control"]', timeout=WAIT)
    page.wait_for_selector("aside.side-panel:not([hidden]) h2", timeout=WAIT)
    shot(page, "6-topology-from-trace")

    # 4. Metrics: completion, a chart with points, a table.
    goto(page, "metrics")
    ready(page, "metrics")
    page.click("#promql")
    page.keyboard.type("istio_req")
    page.wait_for_selector("#promql-suggest:not([hidden]) li:has-text('istio_requests_total')", timeout=WAIT)
    page.keyboard.press("Escape")
    q = 'sum by (destination_workload) (rate(istio_requests_total{reporter="source"}[1m]))'
    goto(page, "metrics?range=15m&q=" + urllib.parse.quote(q))
    ready(page, "metrics")
    page.wait_for_selector(".result .chart-svg path.series", timeout=WAIT)
    d = page.get_attribute(".result .chart-svg path.series", "d")
    if d.count("L") < 1:
        fail(f"chart has too few points: {d[:80]}")
    if page.locator(".result .legend li").count() < 3:
        fail("chart legend has fewer than 3 series")
    box = page.locator(".result .chart-svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.5)
    page.wait_for_selector(".chart-tip:not([hidden]) .tip-row", timeout=WAIT)
    shot(page, "7-metrics-graph")
    page.click("button[role=tab]:has-text('Table')")
    page.wait_for_function("location.hash.includes('tab=table')", timeout=WAIT)
    page.wait_for_selector(".result table.data tbody tr td code", timeout=WAIT)
    hist = page.evaluate("JSON.parse(localStorage.getItem('meshlens.promql.history') || '[]')")
    shot(page, "8-metrics-table")

    # 5. Traffic stats: rows, sortable.
    goto(page, "stats?range=15m")
    ready(page, "stats")
    page.wait_for_selector(".stats-grid table.data tbody tr td code", timeout=WAIT)
    n = page.locator(".stats-grid table.data").first.locator("tbody tr").count()
    if n < 3:
        fail(f"stats per service has {n} rows")
    page.locator(".stats-grid table.data").first.locator("th button").first.click()
    shot(page, "9-stats")

    # 6. Config: renders with or without findings.
    goto(page, "config")
    ready(page, "config")
    page.wait_for_selector("main h1:has-text('Config')", timeout=WAIT)
    shot(page, "10-config")
    step(f"history kept {len(hist)} queries")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report any failure for the Rust test
        traceback.print_exc()
        print(f"ui: FAILED: {e}", file=sys.stderr)
        if errors:
            print("ui: JavaScript errors so far:\n  " + "\n  ".join(errors), file=sys.stderr)
        sys.exit(1)
