"""The web UI's closed loop in a real browser, against the server of tests/ui_loop_browser.rs.

usage: ui_loop.py BASE_URL SCREENSHOT_DIR MESH_FILE

Expects a `meshlens server --mesh DIR --mesh-write` whose mesh directory holds the
VirtualService `http-lb` (subsets v1 and v2 of the DestinationRule `http-lb`, 90/10) and whose
event log holds rollout steps, a verdict, an anomaly and a remediation for `http-lb`. Checks:

- Events: every event is listed newest first with its kind, severity, service and title, and
  links to the graph, the metrics and the traces around its moment; the kind filter narrows
  the list and lives in the URL; the graph link opens the topology at that moment.
- Config: the mesh objects are listed with their validation status; a VirtualService shows
  its YAML; the traffic-shifting wizard (v1 70, v2 30) previews a valid diff and applies it,
  showing the change id and an undo button, and MESH_FILE then holds the new weights; the
  change is an event whose undo button (in the Events view) restores the file.
- Wizards: fault injection, timeouts and retries, and circuit breaking each preview a valid
  diff that adds what the form asked for (not applied).
- Verify: the canary form renders a report (a verdict badge, a score and a metrics table);
  v2 has no traffic, so it must not pass.
- Anomaly marks: `/api/v1/anomalies` answers in the contract's shape; then, with its answer
  replaced by one anomaly of http-lb (the detector needs hours of history to find a real
  one), the topology marks the http-lb node only (ring and tooltip), its panel's charts and
  the Metrics chart of http-lb shade the interval with a tooltip.
- No JavaScript error is logged and no view shows an error banner.

Screenshots go to SCREENSHOT_DIR. Exits non-zero with a message on the first failure.
"""

import json
import sys
import time
import urllib.parse
import urllib.request

import browser
from browser import fail

BASE, SHOTS, MESH_FILE = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
WAIT = 60_000  # ms, for any one view or element
# Optional reports the views explain when a server lacks them; their 404 is not an error.
OPTIONAL = ("/api/v1/validations",)

UI = browser.Harness("ui-loop", BASE, SHOTS, optional=OPTIONAL, wait=WAIT, full_page=True)
step, goto, ready, shot = UI.step, UI.goto, UI.ready, UI.shot


def hash_params(page):
    h = urllib.parse.urlsplit(page.url).fragment
    return urllib.parse.parse_qs(h.split("?", 1)[1] if "?" in h else "")


def check_events(page):
    step("events view")
    goto(page, "events?range=1h")
    ready(page, "events")
    page.wait_for_selector("table.events tr.event-row", timeout=WAIT)
    rows = page.locator("table.events tr.event-row")
    kinds = rows.evaluate_all("rs => rs.map(r => r.dataset.kind)")
    for k in ("rollout", "verdict", "anomaly", "remediation"):
        if k not in kinds:
            fail(f"the events view lacks a {k} event: {kinds}")
    times = rows.evaluate_all("rs => rs.map(r => Date.parse(r.querySelector('time').getAttribute('datetime')))")
    if times != sorted(times, reverse=True):
        fail(f"events are not newest first: {times}")
    text = page.inner_text("table.events")
    for want in ("Rollout", "Verdict", "Anomaly", "http-lb", "canary weight 20%", "critical"):
        if want not in text:
            fail(f"the events table does not show {want!r}")
    # Every row links to the graph, the charts and the traces around its moment.
    for i in range(rows.count()):
        row = rows.nth(i)
        for cls, view in (("ev-graph", "topology"), ("ev-metrics", "metrics"), ("ev-traces", "traces")):
            href = row.locator(f"a.{cls}").get_attribute("href") or ""
            if not href.startswith(f"#/{view}?") or "at=" not in href:
                fail(f"row {i}: the {cls} link is {href!r}")
    verdict_row = page.locator('table.events tr.event-row[data-kind="verdict"]').first
    if not verdict_row.locator(".verdict").count():
        fail("the verdict event does not show its verdict badge")
    again = verdict_row.locator("a.ev-verify").get_attribute("href") or ""
    if not again.startswith("#/verify?") or "baseline=v1" not in again or "canary=v2" not in again:
        fail(f"the verdict's judge-again link is {again!r}")
    shot(page, "01-events")

    step("events: the kind filter")
    page.select_option("#ev-kind", "rollout")
    page.wait_for_function("() => location.hash.includes('kind=rollout')", timeout=WAIT)
    ready(page, "events")
    page.wait_for_selector("table.events tr.event-row", timeout=WAIT)
    kinds = page.locator("table.events tr.event-row").evaluate_all("rs => rs.map(r => r.dataset.kind)")
    if not kinds or set(kinds) != {"rollout"}:
        fail(f"kind=rollout shows {kinds}")
    shot(page, "02-events-rollout")

    step("events: the graph link opens the topology at that moment")
    href = page.locator("table.events tr.event-row a.ev-graph").first.get_attribute("href")
    page.click("table.events tr.event-row a.ev-graph >> nth=0")
    ready(page, "topology")
    p = hash_params(page)
    if p.get("focus") != ["http-lb"] or not p.get("at"):
        fail(f"the graph link opened {page.url} (link {href})")
    page.wait_for_selector(".at-chip", timeout=WAIT)
    shot(page, "03-topology-at-event")

    step("events: the metrics link opens a chart of the service marking the moment")
    goto(page, "events?range=1h&kind=anomaly")
    ready(page, "events")
    page.wait_for_selector("table.events tr.event-row", timeout=WAIT)
    page.click("table.events tr.event-row a.ev-metrics >> nth=0")
    ready(page, "metrics")
    if "http-lb" not in (page.input_value("#promql") or ""):
        fail(f"the metrics link does not query http-lb: {page.url}")
    page.wait_for_selector("figure.chart rect.band-event", timeout=WAIT)
    shot(page, "04-metrics-at-event")


def check_config(page):
    step("config view: the mesh objects")
    goto(page, "config")
    ready(page, "config")
    page.wait_for_selector("table.mesh-objects tr.obj-row", timeout=WAIT)
    keys = page.locator("table.mesh-objects tr.obj-row").evaluate_all("rs => rs.map(r => r.dataset.key)")
    for want in ("VirtualService/default/http-lb", "DestinationRule/default/http-lb"):
        if want not in keys:
            fail(f"the config view does not list {want}: {keys}")
    statuses = page.locator("table.mesh-objects .obj-status").evaluate_all("es => es.map(e => e.dataset.status)")
    if not statuses or any(s not in ("valid", "warning", "error") for s in statuses):
        fail(f"validation statuses: {statuses}")
    if not page.locator(".write-mode.writable").count():
        fail("the config view does not say the server is writable")
    shot(page, "05-config-objects")

    step("config: a VirtualService's YAML and the traffic-shifting wizard")
    page.click('tr.obj-row[data-key="VirtualService/default/http-lb"] a.obj-link')
    ready(page, "config")
    page.wait_for_selector(".obj-detail pre.yaml", timeout=WAIT)
    if "kind: VirtualService" not in page.inner_text(".obj-detail pre.yaml"):
        fail("the selected object's YAML is not shown")
    page.click("#wiz-shift")
    ready(page, "config")
    page.wait_for_selector('#wizard[data-wizard="shift"] input.weight', timeout=WAIT)
    subsets = page.locator("#wizard input.weight").evaluate_all("es => es.map(e => [e.dataset.subset, e.value])")
    if dict(subsets) != {"v1": "90", "v2": "10"}:
        fail(f"the wizard's weights are {subsets}, expected today's v1=90, v2=10")
    if not page.locator("#wiz-apply[disabled]").count():
        fail("Apply is enabled before a preview")
    # A sum other than 100 is refused before anything is sent.
    page.fill('#wizard input[data-subset="v1"]', "50")
    page.click("#wiz-preview")
    page.wait_for_selector(".wiz-result .msg-warn:has-text('add up to')", timeout=WAIT)
    page.fill('#wizard input[data-subset="v1"]', "70")
    page.fill('#wizard input[data-subset="v2"]', "30")
    page.click("#wiz-preview")
    page.wait_for_selector(".wiz-result pre.diff .d-add", timeout=WAIT)
    adds = page.inner_text(".wiz-result pre.diff")
    if "+" not in adds or "weight: 30" not in adds or "weight: 70" not in adds:
        fail(f"the diff does not show the new weights:\n{adds}")
    if "weight: 30" not in page.input_value("#wiz-yaml"):
        fail("the generated YAML lacks the new weight")
    page.wait_for_selector("#wiz-apply:not([disabled])", timeout=WAIT)
    shot(page, "06-config-wizard-preview")

    step("config: apply")
    page.click("#wiz-apply")
    page.wait_for_selector(".wiz-result .applied", timeout=WAIT)
    change = page.get_attribute(".wiz-result .applied", "data-change")
    if not change:
        fail("the applied note names no change id")
    if not page.locator("#wiz-undo").count():
        fail("no undo button after apply")
    on_disk = open(MESH_FILE).read()
    if "weight: 70" not in on_disk or "weight: 30" not in on_disk or "weight: 90" in on_disk:
        fail(f"the applied weights are not on disk:\n{on_disk}")
    shot(page, "07-config-applied")

    step("events: the config change is an event that can be undone")
    goto(page, "events?range=1h&kind=config")
    ready(page, "events")
    page.wait_for_selector("table.events tr.event-row", timeout=WAIT)
    undos = page.locator("table.events button.undo").evaluate_all("bs => bs.map(b => b.dataset.undo)")
    if change not in undos:
        fail(f"the config event's undo buttons are {undos}, expected {change}")
    shot(page, "08-events-config")

    step("events: undo the change")
    page.click(f'table.events button.undo[data-undo="{change}"]')
    page.wait_for_selector(".undo-result", timeout=WAIT)
    if not page.locator(".undo-result.ok").count():
        fail(f"undo failed: {page.inner_text('.undo-result')}")
    on_disk = open(MESH_FILE).read()
    if "weight: 90" not in on_disk or "weight: 30" in on_disk:
        fail(f"the undo did not restore the weights:\n{on_disk}")
    shot(page, "09-events-undone")
    return change


def preview_with(page, key, wizard, fill, wants):
    """Opens `wizard` on object `key`, fills the form, previews; the diff must hold `wants`."""
    goto(page, "config?obj=" + urllib.parse.quote(key) + "&wiz=" + wizard)
    ready(page, "config")
    page.wait_for_selector(f'#wizard[data-wizard="{wizard}"] #wiz-preview', timeout=WAIT)
    for name, value in fill.items():
        page.fill(f'#wizard [name="{name}"]', value)
    page.click("#wiz-preview")
    page.wait_for_selector(".wiz-result .preview-verdict", timeout=WAIT)
    if not page.locator(".wiz-result .preview-verdict .health-healthy").count():
        fail(f"{wizard}: the preview is not valid: {page.inner_text('.wiz-result')}")
    diff = page.inner_text(".wiz-result pre.diff")
    added = "\n".join(l for l in diff.splitlines() if l.startswith("+"))
    for w in wants:
        if w not in added:
            fail(f"{wizard}: the diff adds no {w!r}:\n{diff}")
    page.wait_for_selector("#wiz-apply:not([disabled])", timeout=WAIT)


def check_wizards(page):
    step("config: the fault-injection wizard")
    preview_with(page, "VirtualService/default/http-lb", "fault",
                 {"abortPct": "10", "abortStatus": "503", "delayPct": "5", "delay": "2s"},
                 ["httpStatus: 503", "fixedDelay: 2s"])
    shot(page, "10-wizard-fault")
    step("config: the timeouts-and-retries wizard")
    preview_with(page, "VirtualService/default/http-lb", "timeouts",
                 {"timeout": "3s", "attempts": "2", "perTryTimeout": "1s"},
                 ["3s", "attempts: 2"])
    step("config: the circuit-breaking wizard")
    preview_with(page, "DestinationRule/default/http-lb", "breaker",
                 {"maxConnections": "100", "maxPending": "10", "consecutive5xxErrors": "3"},
                 ["maxConnections: 100", "http1MaxPendingRequests: 10", "consecutive5xxErrors: 3"])
    shot(page, "11-wizard-breaker")


def check_verify(page):
    step("verify view")
    goto(page, "verify")
    ready(page, "verify")
    page.fill("#verify-form input[name=service]", "http-lb")
    page.fill("#verify-form input[name=baseline]", "v1")
    page.fill("#verify-form input[name=canary]", "v2")
    page.select_option("#verify-form select[name=window]", "5m")
    page.click("#verify-form button[type=submit]")
    page.wait_for_function("() => location.hash.includes('canary=v2')", timeout=WAIT)
    ready(page, "verify")
    page.wait_for_selector(".verify-report .verdict", timeout=WAIT)
    verdict = page.get_attribute(".verify-report .verdict", "data-verdict")
    if verdict not in ("pass", "fail", "inconclusive"):
        fail(f"verdict {verdict!r}")
    if verdict != "inconclusive":
        fail(f"a canary without traffic is judged {verdict!r}, not inconclusive")
    if not page.locator("table.verify-metrics").count():
        fail("no metrics table")
    shot(page, "12-verify")


def check_anomaly_marks(page):
    step("anomalies: the API's shape")
    with urllib.request.urlopen(f"{BASE}/api/v1/anomalies") as r:
        body = json.load(r)
    data = body.get("data") or {}
    if body.get("status") != "success" or not all(k in data for k in ("threshold", "current", "history")):
        fail(f"/api/v1/anomalies answers {body}")

    now = int(time.time() * 1000)
    fixture = {"status": "success", "data": {"threshold": 1.0,
        "current": [{"service": "http-lb", "signal": "p99", "score": 2.5, "value": 850.0, "since": now - 120_000}],
        "history": [{"service": "http-lb", "signal": "p99", "start": now - 120_000, "end": None, "peakScore": 2.5},
                    {"service": "other", "signal": "rate", "start": now - 200_000, "end": now - 100_000, "peakScore": 1.4}]}}
    page.route("**/api/v1/anomalies*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(fixture)))

    step("anomalies: the topology marks http-lb's node")
    goto(page, "topology?range=15m")
    page.reload()  # no answer kept from before the fixture
    ready(page, "topology")
    page.wait_for_selector(".node.anomalous .anomaly-mark", timeout=WAIT)
    marked = page.locator(".node.anomalous").evaluate_all("es => es.map(e => e.dataset.nodeName)")
    if marked != ["http-lb-v1"]:
        fail(f"anomaly marks on {marked}, expected http-lb-v1 only")
    title = page.locator('.node[data-node-name="http-lb-v1"] > title').text_content()
    if "Anomaly" not in title or "p99" not in title:
        fail(f"the marked node's tooltip says {title!r}")
    if page.locator('.node[data-node-name="frontend"] .anomaly-mark').count():
        fail("frontend is marked")
    shot(page, "13-topology-anomaly")

    step("anomalies: the node's panel shades its charts")
    page.click('.node[data-node-name="http-lb-v1"]')
    page.wait_for_selector(".side-panel figure.chart.has-bands rect.band-anomaly", timeout=WAIT)
    tip = page.locator(".side-panel figure.chart.has-bands rect.band-anomaly title").first.text_content()
    if "http-lb" not in tip or "p99" not in tip:
        fail(f"the band's tooltip says {tip!r}")
    shot(page, "14-panel-anomaly")

    step("anomalies: the metrics chart of http-lb shades the interval")
    q = 'sum(rate(istio_requests_total{destination_service_name="http-lb"}[1m]))'
    goto(page, "metrics?range=15m&q=" + urllib.parse.quote(q))
    ready(page, "metrics")
    page.wait_for_selector("figure.chart.has-bands rect.band-anomaly", timeout=WAIT)
    n = page.get_attribute("figure.chart.has-bands", "data-bands")
    if n != "1":
        fail(f"the chart shades {n} intervals, expected http-lb's one")
    box = page.locator("figure.chart rect.band-anomaly").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector(".chart-tip:not([hidden]) .tip-band", timeout=WAIT)
    shot(page, "15-metrics-anomaly")
    page.unroute("**/api/v1/anomalies*")


def run(page):
    check_events(page)
    change = check_config(page)
    check_wizards(page)
    check_verify(page)
    check_anomaly_marks(page)
    step(f"applied change {change}")


if __name__ == "__main__":
    sys.exit(UI.launch(run, after=lambda: step("ok")))
