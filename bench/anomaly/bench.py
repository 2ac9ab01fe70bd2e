#!/usr/bin/env python3
"""Anomaly detection quality on `meshlens demo`: warm-up, a quiet period, then faults injected
by editing the demo's mesh directory (abort percentage, fixed delay) and restored; polls
/api/v1/anomalies and reports detection delay p50/p95 per fault type and false alarms per hour
of quiet traffic. Configured by environment (see README.md); standard library only."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.environ["MESHLENS_BIN"]
INTERVAL = float(os.environ.get("INTERVAL", "5"))
QUIET = float(os.environ.get("QUIET_MIN", "3")) * 60
FAULTS = os.environ.get("FAULTS", "abort,delay,abort,delay").split(",")
FAULT_SEC = float(os.environ.get("FAULT_SEC", "45"))
RECOVER_SEC = float(os.environ.get("RECOVER_SEC", "75"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = int(os.environ.get("PORT") or free_port())
INGRESS = int(os.environ.get("INGRESS_PORT") or free_port())
POLL = 2.0

# Istio faults on clover-server's default route (applied by its callers' sidecars, as Istio
# does): the aborts and delays show on http-lb (5xx share, p99) and as a drop of the rate
# clover-server receives.
FAULT_YAML = {
    "abort": "    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}\n",
    "delay": "    fault: {delay: {fixedDelay: 400ms, percentage: {value: 100}}}\n",
}
ANCHOR = "  - route: [{destination: {host: clover-server}}]\n    retries:"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=10) as r:
        return json.load(r)


def help_has(flag):
    out = subprocess.run([BIN, "demo", "--help"], capture_output=True, text=True).stdout
    return flag in out


def write_atomic(path, text):
    tmp = path + ".bench-tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    data = tempfile.mkdtemp(prefix="meshlens-anomaly-bench-")
    interval_flag = None
    for f in ("--anomaly-interval", "--anomaly.interval"):
        if help_has(f):
            interval_flag = f
    interval = INTERVAL if interval_flag else 15.0
    if not interval_flag:
        log("this demo has no --anomaly-interval flag: the server evaluates every 15 s (default)")
    warmup = float(os.environ.get("WARMUP_SEC", str(33 * interval + 60)))
    total = warmup + QUIET + len(FAULTS) * (FAULT_SEC + RECOVER_SEC) + 60
    cmd = [BIN, "demo", "--data-dir", data, "--listen", f"127.0.0.1:{PORT}",
           "--ingress", f"127.0.0.1:{INGRESS}", "--duration", str(int(total))]
    if interval_flag:
        cmd += [interval_flag, f"{interval:g}s"]
    log(f"starting: {' '.join(cmd)}")
    demo = subprocess.Popen(cmd, stdout=open(os.path.join(data, "demo.log"), "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    mesh = os.path.join(data, "mesh", "outbound", "mesh.yaml")
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/-/ready", timeout=5).read()
                if os.path.exists(mesh):
                    break
            except Exception:
                pass
            if demo.poll() is not None or time.time() > deadline:
                sys.exit(f"the demo did not become ready; see {data}/demo.log")
            time.sleep(1)
        original = open(mesh).read()
        if ANCHOR not in original:
            sys.exit("the demo's mesh.yaml has no clover-server default route to fault")
        t0 = time.time()
        log(f"ready; warm-up {warmup:.0f} s at a {interval:g} s interval")
        seen = {}  # (service, signal, since) -> first time listed

        def poll_until(end):
            while time.time() < end:
                try:
                    d = get("/api/v1/anomalies")["data"]
                    for c in d["current"]:
                        key = (c["service"], c["signal"], c["since"])
                        if key not in seen:
                            seen[key] = time.time()
                            log(f"  anomaly: {c['service']} {c['signal']} score {c['score']:.2f} value {c['value']}")
                except Exception as e:
                    log(f"  poll failed: {e}")
                time.sleep(POLL)

        poll_until(t0 + warmup)
        quiet_start = time.time()
        log(f"quiet period {QUIET:.0f} s")
        poll_until(quiet_start + QUIET)
        quiet_end = time.time()
        faults = []
        for kind in FAULTS:
            text = original.replace(ANCHOR, ANCHOR.replace("    retries:", FAULT_YAML[kind] + "    retries:"), 1)
            at = time.time()
            write_atomic(mesh, text)
            log(f"fault {kind} injected")
            poll_until(at + FAULT_SEC)
            write_atomic(mesh, original)
            restored = time.time()
            log(f"fault {kind} removed")
            poll_until(restored + RECOVER_SEC)
            faults.append((kind, at, restored))
        # Everything the server recorded, for the history (episode starts) and the events.
        hist = get("/api/v1/anomalies")["data"]["history"]
        events = get("/api/v1/events?kind=anomaly&limit=1000")["data"]
    finally:
        try:
            os.killpg(demo.pid, signal.SIGINT)
            demo.wait(timeout=20)
        except Exception:
            os.killpg(demo.pid, signal.SIGTERM)
            demo.wait(timeout=20)

    quiet_h = (quiet_end - quiet_start) / 3600
    false_alarms = [h for h in hist if quiet_start * 1000 <= h["start"] < quiet_end * 1000]
    delays = {}
    missed = {}
    for kind, at, restored in faults:
        # Visible: first poll listing an anomaly that started after the injection.
        vis = [t for (svc, sig, since), t in seen.items() if since >= at * 1000 - interval * 1000 and at <= t <= restored + 30]
        if vis:
            delays.setdefault(kind, []).append(min(vis) - at)
        else:
            missed[kind] = missed.get(kind, 0) + 1
    report = {
        "interval_s": interval,
        "warmup_s": warmup,
        "quiet_minutes": round(QUIET / 60, 2),
        "false_alarms": len(false_alarms),
        "false_alarms_per_hour": round(len(false_alarms) / quiet_h, 2) if quiet_h > 0 else None,
        "faults": {},
        "episodes": len(hist),
        "anomaly_events": len(events),
    }
    for kind in sorted(set(FAULTS)):
        d = delays.get(kind, [])
        report["faults"][kind] = {
            "injected": sum(1 for f in faults if f[0] == kind),
            "detected": len(d),
            "missed": missed.get(kind, 0),
            "delay_p50_s": round(pct(d, 50), 1) if d else None,
            "delay_p95_s": round(pct(d, 95), 1) if d else None,
            "delays_s": [round(x, 1) for x in d],
        }
    print(json.dumps(report, indent=2))
    print("episodes (service, signal, start offset s, duration s, peak):")
    for h in sorted(hist, key=lambda h: h["start"]):
        dur = (h["end"] - h["start"]) / 1000 if h["end"] else None
        print(f"  {h['service']:24} {h['signal']:7} {h['start'] / 1000 - t0:8.0f} {dur} {h['peakScore']:.2f}")
    print(f"data kept in {data}")


if __name__ == "__main__":
    main()
