"""The web UI's alerting in a real browser, against a running `meshlens server` or `meshlens demo`.

usage: ui_alerts.py BASE_URL SCREENSHOT_DIR [rules | demo [SERVICE]]

`rules` (the default) expects the server of tests/ui_alerts_browser.rs: a rule group
`checkout` with the alert CheckoutDown firing (labels service=checkout), CheckoutSlow pending
(`for: 1h`) and one recording rule, and Istio metrics of `frontend` calling `checkout`. It
checks that the Alerts view lists both alerts with their state, annotations and "since", the
rule group with every rule's health ok, that its filters (state, rule type, text, service)
narrow what is shown and live in the URL, that the view polls on its own, that the overview
puts a red badge on `checkout` only and the badge leads to its alerts, that the topology
marks the `checkout` node only and its panel names the alert, and that every API request
carries the tenant chosen.

`demo` expects `meshlens demo` with its SLOs loaded and an SLO alert of SERVICE (default:
any service) firing: the Alerts view shows it and its SLO card, the topology marks the
node it is about.

Screenshots go to SCREENSHOT_DIR. No JavaScript error may be logged. Exits non-zero with a
message on the first failure.
"""

import json
import sys
import urllib.parse
import urllib.request

import browser
from browser import fail

BASE, SHOTS = sys.argv[1].rstrip("/"), sys.argv[2]
MODE = sys.argv[3] if len(sys.argv) > 3 else "rules"
DEMO_SERVICE = sys.argv[4] if len(sys.argv) > 4 else ""
WAIT = 60_000  # ms, for any one view or element
POLL_WAIT = 45_000  # ms for the view's own 15 s poll to ask again
# The topology panel asks for the optional validations report; its 404 is not an error.
OPTIONAL = ("/api/v1/validations",)

UI = browser.Harness("ui-alerts", BASE, SHOTS, optional=OPTIONAL, wait=WAIT, full_page=True)
step, goto, ready, shot = UI.step, UI.goto, UI.ready, UI.shot

api_requests = []  # (path, X-Scope-OrgID or None)


def on_request(req):
    path = urllib.parse.urlsplit(req.url).path
    if path.startswith("/api/"):
        api_requests.append((path, req.headers.get("x-scope-orgid")))


def api_get(path):
    with urllib.request.urlopen(f"{BASE}{path}", timeout=30) as r:
        return r.status, json.load(r)


def words(locator):
    """An element's text with its white space collapsed."""
    return " ".join(locator.text_content().split())


def alert_rows(page):
    """(alertname, state) of every row of the alerts table, in order."""
    return page.evaluate("""() => [...document.querySelectorAll('#active-alerts tr.alert-row')]
        .map((tr) => [tr.dataset.alertname, tr.dataset.state])""")


def rule_rows(page):
    """(group, rule, type, health) of every rule row shown."""
    return page.evaluate("""() => [...document.querySelectorAll('.rule-group tr[data-rule]')]
        .map((tr) => [tr.closest('.rule-group').dataset.group, tr.dataset.rule, tr.dataset.type, tr.dataset.health])""")


def wait_rows(page, fn, want, what):
    for _ in range(WAIT // 200):
        got = fn(page)
        if sorted(got) == sorted(want):
            return
        page.wait_for_timeout(200)
    fail(f"{what}: showing {fn(page)}, expected {want}")


def check_alerts_view(page):
    goto(page, "alerts")
    ready(page, "alerts")
    wait_rows(page, alert_rows, [["CheckoutDown", "firing"], ["CheckoutSlow", "pending"]], "alerts table")
    if alert_rows(page)[0] != ["CheckoutDown", "firing"]:
        fail(f"firing alerts are not listed first: {alert_rows(page)}")
    down = page.locator('#active-alerts tr.alert-row[data-alertname="CheckoutDown"]')
    summary = down.locator(".ann-summary").inner_text()
    if summary != "checkout is down":
        fail(f"CheckoutDown's summary reads {summary!r}")
    desc = down.locator(".ann-description").inner_text()
    if "checkout has failed every request" not in desc:
        fail(f"CheckoutDown's description (templated by the server) reads {desc!r}")
    chips = down.locator(".label-chip").all_inner_texts()
    if "service=checkout" not in chips:
        fail(f"CheckoutDown's labels read {chips}")
    since = down.locator(".since").inner_text()
    if not since or since == "–" or not since[0].isdigit():
        fail(f"CheckoutDown's 'since' reads {since!r}")
    slow = page.locator('#active-alerts tr.alert-row[data-alertname="CheckoutSlow"]')
    if words(slow.locator(".alert-state")) != "◔ Pending":
        fail(f"CheckoutSlow's state reads {words(slow.locator('.alert-state'))!r}")
    if slow.locator(".ann-summary").inner_text() != "checkout is slow":
        fail("CheckoutSlow lacks its summary")

    # Rules grouped by group, all healthy and evaluated.
    wait_rows(page, rule_rows, [
        ["checkout", "CheckoutDown", "alerting", "ok"],
        ["checkout", "CheckoutSlow", "alerting", "ok"],
        ["checkout", "checkout:requests:rate1m", "recording", "ok"],
    ], "rules")
    head = page.locator('details.rule-group[data-group="checkout"] > summary').inner_text()
    if "never" in head or "ago" not in head:
        fail(f"the group's last evaluation reads {head!r}")
    state = words(page.locator('tr[data-rule="CheckoutSlow"] .alert-state'))
    if state != "◔ Pending":
        fail(f"the rule CheckoutSlow's state reads {state!r}")
    # SLOs: this server has none; the section says how to add them.
    status, _ = api_get("/api/v1/slos")
    if status == 200 and "start the server with --slo FILE" not in page.locator("#slos").inner_text():
        fail(f"the SLO section reads {page.locator('#slos').inner_text()!r}")
    shot(page, "1-alerts")

    # Filters: in the URL, redrawn without a reload.
    page.select_option("#alert-state", "pending")
    page.wait_for_function("location.hash.includes('state=pending')", timeout=WAIT)
    wait_rows(page, alert_rows, [["CheckoutSlow", "pending"]], "state=pending, alerts")
    wait_rows(page, rule_rows, [["checkout", "CheckoutSlow", "alerting", "ok"]], "state=pending, rules")
    page.select_option("#alert-state", "")
    page.select_option("#alert-type", "recording")
    wait_rows(page, rule_rows, [["checkout", "checkout:requests:rate1m", "recording", "ok"]], "type=recording")
    page.select_option("#alert-type", "")
    page.fill("#alert-q", "slow")
    page.wait_for_function("location.hash.includes('q=slow')", timeout=WAIT)
    wait_rows(page, alert_rows, [["CheckoutSlow", "pending"]], "text 'slow', alerts")
    wait_rows(page, rule_rows, [["checkout", "CheckoutSlow", "alerting", "ok"]], "text 'slow', rules")
    shot(page, "2-alerts-filtered")
    page.fill("#alert-q", "")
    page.fill("#alert-service", "frontend")
    page.press("#alert-service", "Enter")
    wait_rows(page, alert_rows, [], "service=frontend")
    if "No alert matches the filter" not in page.locator("#active-alerts").inner_text():
        fail("an empty filter result does not say so")
    page.click("#alert-clear")
    wait_rows(page, alert_rows, [["CheckoutDown", "firing"], ["CheckoutSlow", "pending"]], "cleared filter")

    # The view asks again on its own (every 15 s), without a navigation.
    mark = len(api_requests)
    for _ in range(POLL_WAIT // 500):
        if any(p == "/api/v1/alerts" for p, _ in api_requests[mark:]):
            break
        page.wait_for_timeout(500)
    else:
        fail(f"the Alerts view did not poll /api/v1/alerts within {POLL_WAIT // 1000}s")
    ready(page, "alerts")
    wait_rows(page, alert_rows, [["CheckoutDown", "firing"], ["CheckoutSlow", "pending"]], "after a poll")


def check_overview(page):
    goto(page, "overview")
    ready(page, "overview")
    page.wait_for_selector('table.data a.svc-link:text-is("checkout")', timeout=WAIT)
    badges = page.evaluate("""() => [...document.querySelectorAll('table.data tbody tr')].map((tr) => [
        tr.querySelector('a.svc-link')?.textContent, tr.querySelector('a.alert-badge')?.textContent || null])""")
    got = {name: badge for name, badge in badges}
    if not (got.get("checkout") or "").endswith("1 firing"):
        fail(f"checkout has no alert badge: {badges}")
    if got.get("frontend", "missing") is not None:
        fail(f"frontend should have no badge: {badges}")
    shot(page, "3-overview")
    page.click("table.data a.alert-badge")
    ready(page, "alerts")
    if "service=checkout" not in page.evaluate("location.hash"):
        fail(f"the badge leads to {page.evaluate('location.hash')}")
    if page.input_value("#alert-service") != "checkout":
        fail("the Alerts view does not show the service filter")
    wait_rows(page, alert_rows, [["CheckoutDown", "firing"], ["CheckoutSlow", "pending"]], "checkout's alerts")


def check_topology(page, service, alertname):
    """The node of `service` (or, in the demo, a workload of it: `clover-server1` serves
    `clover-server`) carries the alert mark, names `alertname` in its tooltip and its panel,
    and the panel links to the alert. Returns the names of every marked node."""
    goto(page, "topology")
    ready(page, "topology")
    page.wait_for_selector(f'g.node.alerting[data-node-name^="{service}"] .alert-mark', timeout=WAIT)
    marked = page.evaluate("""() => [...document.querySelectorAll('g.node.alerting')].map((g) => g.dataset.nodeName)""")
    # A workload of the service first: its mark comes from the workload→app/service aliases.
    mine = sorted((n for n in marked if n.startswith(service)), key=lambda n: (n == service, n))
    step(f"nodes marked: {marked}")
    node = f'g.node[data-node-name="{mine[0]}"]'
    tip = page.locator(f"{node} > title").text_content()
    if alertname not in tip:
        fail(f"the node's tooltip does not name {alertname}: {tip!r}")
    page.click(node)
    page.wait_for_selector(f'aside.side-panel:not([hidden]) .panel-alerts a.alert-link:text-is("{alertname}")', timeout=WAIT)
    shot(page, f"{'4' if MODE == 'rules' else 'd2'}-topology-alert")
    page.click(f'.panel-alerts a.alert-link:text-is("{alertname}")')
    ready(page, "alerts")
    page.wait_for_selector(f'#active-alerts tr.alert-row[data-alertname="{alertname}"]', timeout=WAIT)
    return marked


def check_tenant(page):
    mark = len(api_requests)
    goto(page, "alerts?tenant=team-x")
    ready(page, "alerts")
    wait_rows(page, alert_rows, [["CheckoutDown", "firing"], ["CheckoutSlow", "pending"]], "alerts with a tenant")
    sent = [r for r in api_requests[mark:] if r[0] in ("/api/v1/alerts", "/api/v1/rules", "/api/v1/slos")]
    bad = [r for r in sent if r[1] != "team-x"]
    if len({p for p, _ in sent}) < 3 or bad:
        fail(f"alerting requests without X-Scope-OrgID: team-x: {bad} of {sent}")


def run_rules(page):
    check_alerts_view(page)
    check_overview(page)
    marked = check_topology(page, "checkout", "CheckoutDown")
    if marked != ["checkout"]:
        fail(f"the nodes marked as alerting are {marked}, not only checkout")
    check_tenant(page)


def run_demo(page):
    want = DEMO_SERVICE
    _, body = api_get("/api/v1/alerts")
    firing = [a for a in body["data"]["alerts"] if a["state"] == "firing"
              and a["labels"].get("service") and (not want or a["labels"]["service"] == want)]
    if not firing:
        fail(f"no firing SLO alert{' of ' + want if want else ''} to look for")
    alert = firing[0]
    service, name = alert["labels"]["service"], alert["labels"]["alertname"]
    step(f"looking for {name} of {service}")
    goto(page, f"alerts?service={urllib.parse.quote(service)}")
    ready(page, "alerts")
    page.wait_for_selector(f'#active-alerts tr.alert-row[data-alertname="{name}"][data-state="firing"]', timeout=WAIT)
    card = page.locator(f'#slos section.slo[data-service="{service}"]')
    card.wait_for(timeout=WAIT)
    if card.locator(".budget").count() < 1:
        fail(f"the SLO of {service} shows no error budget")
    if card.locator("table.slo-values tr[data-key^='burn_rate']").count() < 1:
        fail(f"the SLO of {service} shows no burn rate")
    shot(page, "d1-demo-alerts")
    check_topology(page, service, name)


def run(page):
    page.on("request", on_request)
    run_demo(page) if MODE == "demo" else run_rules(page)


if __name__ == "__main__":
    sys.exit(UI.launch(run, after=lambda: step("passed")))
