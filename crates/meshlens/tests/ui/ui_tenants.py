"""Browser check that the meshlens web UI keeps tenants apart, against a `--multitenancy`
server holding `alpha` data for team-a and `beta` data for team-b.

usage: ui_tenants.py BASE_URL SCREENSHOT_DIR

Drives Debian's headless Chromium with Playwright, judging visible text only: without a tenant
the views say one is needed; with team-a (set in the top bar's field) the metrics chart, the
metric-name completion, the trace search and the trace-sourced topology show alpha and no beta;
with team-b (set in the address) the reverse; with team-a|team-b both. No JavaScript error may
be logged (the 401s of the tenant-less phase aside). Exits non-zero on the first failure.
"""

import sys
import urllib.parse

import browser
from browser import fail

BASE, SHOTS = sys.argv[1].rstrip("/"), sys.argv[2]

WAIT = 30_000  # ms, for any one element or text
QUERY = '{__name__=~".+_requests_total"}'
NEEDS = "this server needs a tenant id"
# Every name each tenant's data shows in the UI, and the words that must not leak across.
OWN = {"team-a": "alpha", "team-b": "beta"}

# Chromium logs every non-2xx fetch; the tenant-less phase expects 401s. Its views show error
# banners on purpose, so screenshots do not fail on them.
UI = browser.Harness("ui-tenants", BASE, SHOTS, allow_status=("401",), wait=WAIT, banners=False)
step, goto, shot = UI.step, UI.goto, UI.shot


def wait_text(page, selector, text, what):
    """Waits until some element matching `selector` shows `text`."""
    try:
        page.wait_for_function(
            """([sel, text]) => [...document.querySelectorAll(sel)].some((e) => e.textContent.includes(text))""",
            arg=[selector, text], timeout=WAIT)
    except Exception:  # noqa: BLE001 - report what is shown instead of a bare timeout
        shown = page.locator(selector).all_text_contents() if page.locator(selector).count() else []
        fail(f"{what}: no {selector!r} shows {text!r}; shown: {shown[:10]}; "
             f"main says: {page.inner_text('main')[:400]!r}")


def main_text(page):
    return page.inner_text("main")


def none_of(texts, words, what):
    leaked = [t for t in texts if any(w in t for w in words)]
    if leaked:
        fail(f"{what} shows another tenant's data: {leaked[:10]}")


def tenant_in_hash(page):
    return urllib.parse.unquote(page.evaluate("location.hash")).split("tenant=")[-1].split("&")[0] \
        if "tenant=" in page.evaluate("location.hash") else ""


def set_tenant_field(page, tenant):
    """Types the tenant into the top bar like a user and waits until the address carries it."""
    page.fill("#f-tenant", tenant)
    page.press("#f-tenant", "Enter")
    page.wait_for_function(
        "(t) => new URLSearchParams(location.hash.split('?')[1] || '').get('tenant') === t",
        arg=tenant, timeout=WAIT)


def check_no_tenant(page):
    """Every data view explains that the server wants a tenant, and points at the field."""
    goto(page, "overview")
    wait_text(page, "main .msg-error", NEEDS, "overview without a tenant")
    page.wait_for_selector("#f-tenant[aria-invalid=true]", timeout=WAIT)
    if page.input_value("#f-tenant") != "":
        fail(f"a fresh browser has tenant {page.input_value('#f-tenant')!r}")
    shot(page, "1-no-tenant-overview")
    goto(page, "metrics?q=" + urllib.parse.quote(QUERY))
    wait_text(page, "main .result .msg-error", NEEDS, "metrics without a tenant")
    if page.locator("main .legend li").count():
        fail("the metrics view charts series without a tenant")
    goto(page, "traces")
    wait_text(page, "main .msg-error", NEEDS, "traces without a tenant")
    goto(page, "topology?source=traces")
    wait_text(page, "main .msg-error", NEEDS, "topology without a tenant")
    if page.locator("g.node").count():
        fail("the topology draws nodes without a tenant")
    step("without a tenant every view asks for one")


def check_metrics(page, own, other, tenant):
    """The chart's legend names exactly the tenants' own series."""
    for svc in own:
        wait_text(page, "main .result .legend li", f"{svc}_requests_total", f"metrics chart for {tenant}")
    legend = page.locator("main .result .legend li").all_text_contents()
    if len(legend) != len(own):
        fail(f"the chart for {tenant} has {len(legend)} series, not {len(own)}: {legend}")
    for svc in own:
        if not any(f'job="{svc}"' in t for t in legend):
            fail(f"the chart for {tenant} lacks {svc}'s series: {legend}")
    none_of(legend, other, f"the metrics chart for {tenant}")
    none_of([main_text(page)], other, f"the metrics view for {tenant}")
    if page.locator("main .result .chart-svg .series").count() < len(own):
        fail(f"the chart for {tenant} draws fewer than {len(own)} series")
    if "|" in tenant:
        for t in tenant.split("|"):
            if not any(f'__tenant_id__="{t}"' in x for x in legend):
                fail(f"the federated chart does not label {t}'s series: {legend}")


def check_completion(page, own, other, tenant):
    """Completing a metric name offers this tenant's names only."""
    page.fill("#promql", "")
    page.click("#promql")
    page.keyboard.type("requests_tot")
    for svc in own:
        wait_text(page, "#promql-suggest:not([hidden]) li", f"{svc}_requests_total", f"completion for {tenant}")
    offered = page.locator("#promql-suggest li").all_text_contents()
    none_of(offered, other, f"metric-name completion for {tenant}")
    page.keyboard.press("Escape")


def check_traces(page, own, other, tenant):
    """The service list and the matching traces are the tenant's own."""
    page.wait_for_selector("main table.data tbody a.trace-link", timeout=WAIT)
    for svc in own:
        wait_text(page, "main table.data tbody a.trace-link", f"{svc}: get /{svc}", f"traces for {tenant}")
        wait_text(page, "#trace-service option", f"{svc}-db", f"the service list for {tenant}")
    roots = page.locator("main table.data tbody a.trace-link").all_text_contents()
    if len(roots) != 2 * len(own):
        fail(f"the traces view for {tenant} lists {len(roots)} traces, not {2 * len(own)}: {roots}")
    services = page.locator("#trace-service option").all_text_contents()
    want = sorted(["all services"] + [s for svc in own for s in (svc, f"{svc}-db")])
    if sorted(services) != want:
        fail(f"the service list for {tenant} is {services}, not {want}")
    none_of([main_text(page)], other, f"the traces view for {tenant}")


def check_topology(page, own, other, tenant):
    """The graph built from traces has the tenant's nodes only."""
    for svc in own:
        for name in (svc, f"{svc}-db"):
            wait_text(page, "main g.node .node-name", name, f"topology for {tenant}")
    names = page.locator("main g.node").evaluate_all("els => els.map((e) => e.dataset.nodeName)")
    want = sorted(s for svc in own for s in (svc, f"{svc}-db"))
    if sorted(names) != want:
        fail(f"the topology for {tenant} has nodes {names}, not {want}")
    none_of([main_text(page)], other, f"the topology for {tenant}")
    if page.locator("main g.edge").count() != len(own):
        fail(f"the topology for {tenant} has {page.locator('main g.edge').count()} edges, not {len(own)}")


def run(page):
    check_no_tenant(page)

    # team-a, chosen in the top bar while the metrics view shows the query.
    goto(page, "metrics?q=" + urllib.parse.quote(QUERY))
    wait_text(page, "main .result .msg-error", NEEDS, "metrics without a tenant")
    set_tenant_field(page, "team-a")
    if page.get_attribute("#f-tenant", "aria-invalid") == "true":
        fail("the tenant field is still marked invalid after a tenant was set")
    check_metrics(page, ["alpha"], ["beta"], "team-a")
    check_completion(page, ["alpha"], ["beta"], "team-a")
    shot(page, "2-team-a-metrics")
    page.click("#nav-traces")
    check_traces(page, ["alpha"], ["beta"], "team-a")
    shot(page, "3-team-a-traces")
    page.click("#nav-topology")
    page.select_option("main select:has(option[value=traces])", "traces")
    check_topology(page, ["alpha"], ["beta"], "team-a")
    shot(page, "4-team-a-topology")
    if page.evaluate("localStorage.getItem('meshlens.tenant')") != "team-a":
        fail("the chosen tenant is not remembered")
    step("team-a sees alpha only")

    # team-b, named in the address; the field follows it.
    goto(page, "topology?source=traces&tenant=team-b")
    check_topology(page, ["beta"], ["alpha"], "team-b")
    if page.input_value("#f-tenant") != "team-b":
        fail(f"the tenant field shows {page.input_value('#f-tenant')!r} for an address naming team-b")
    shot(page, "5-team-b-topology")
    page.click("#nav-traces")
    check_traces(page, ["beta"], ["alpha"], "team-b")
    page.click("#nav-metrics")
    page.wait_for_selector("main[data-view=metrics] #promql", timeout=WAIT)
    check_completion(page, ["beta"], ["alpha"], "team-b")
    page.fill("#promql", QUERY)
    page.press("#promql", "Enter")
    check_metrics(page, ["beta"], ["alpha"], "team-b")
    shot(page, "6-team-b-metrics")
    step("team-b sees beta only")

    # Both, read across tenants with `a|b` in the field.
    both = ["alpha", "beta"]
    set_tenant_field(page, "team-a|team-b")
    check_metrics(page, both, [], "team-a|team-b")
    check_completion(page, both, [], "team-a|team-b")
    page.click("#nav-traces")
    check_traces(page, both, [], "team-a|team-b")
    page.click("#nav-topology")
    page.select_option("main select:has(option[value=traces])", "traces")
    check_topology(page, both, [], "team-a|team-b")
    shot(page, "7-both-topology")
    step("team-a|team-b sees both")

    # A fresh address without a tenant takes the remembered one.
    goto(page, "traces")
    page.wait_for_function("location.hash.includes('tenant=')", timeout=WAIT)
    if tenant_in_hash(page) != "team-a|team-b" or page.input_value("#f-tenant") != "team-a|team-b":
        fail(f"the remembered tenant is not restored: {page.evaluate('location.hash')}")
    check_traces(page, both, [], "team-a|team-b (restored)")


if __name__ == "__main__":
    sys.exit(UI.launch(run, after=lambda: step("all tenant checks passed")))
