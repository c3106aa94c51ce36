#!/usr/bin/env python3
"""The database goes away under a serving gateway: restart PostgreSQL (its own scratch server, fsync on) while a
client keeps sending consent changes and event batches, and check what the gateway promises:

- during the outage every request is answered, within the timeout, with 503 and Retry-After in the one error shape
  (never a 500, never a hang), and /health/ready answers 503;
- once the database is back the gateway reconnects by itself (no restart): requests succeed again within seconds;
- nothing acknowledged is lost: every consent change answered 201 is in force afterwards, every event batch answered
  200 is stored; the audit log verifies.

Usage: pg_restart_test.py [--veil .build/debug/veil] [--rounds 3]
Prints the figures and 'N passed, M failed'; exits 1 on any failure.
"""
import argparse
import os
import subprocess
import sys
import threading
import time

from veil_instance import ROOT, Checks, Instance, free_port

SCRATCH = os.path.join(ROOT, "scripts", "pg-scratch.sh")


def psql(url, sql):
    return subprocess.run(["psql", url, "-tAc", sql], check=True, capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", default=os.path.join(ROOT, ".build/debug/veil"))
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    check = Checks()
    veil = Instance(a.veil, "veil-pgrestart-")
    pgdir = veil.work + "/pg"
    os.makedirs(pgdir)
    os.chmod(veil.work, 0o755)
    port = free_port()
    url = subprocess.run([SCRATCH, "start", pgdir, str(port)], check=True, capture_output=True, text=True).stdout.strip()
    try:
        return run(a, veil, check, pgdir, port, url)
    finally:
        subprocess.run([SCRATCH, "stop", pgdir], capture_output=True)


def run(a, veil, check, pgdir, port, url):
    veil.common += ["--database-url", url]
    app, officer = veil.principal("pg-app", "app"), veil.principal("pg-dpo", "compliance-officer")
    server = veil.start()
    api = veil.api
    acked_consents = {}   # subject -> granted, for every 201
    acked_events = 0      # events of batches answered 200 (each batch's events are new)
    acked_items = set()   # the item of each acknowledged event (one event per item)
    outage = threading.Event()
    stop = threading.Event()
    figures = {"503": 0, "ok": 0, "slow": 0, "other": []}
    lock = threading.Lock()
    counter = [0]

    def client():
        nonlocal acked_events
        while not stop.is_set():
            with lock:
                counter[0] += 1
                n = counter[0]
            subject = "pg-%d@example.com" % (n % 40)
            granted = n % 3 != 0
            started = time.time()
            try:
                if n % 2:
                    status, body, headers = api.call_full("POST", "/v1/consents", app, {
                        "subject": subject, "purpose": "personalization", "granted": granted, "method": "banner",
                        "notice_version": "2026-01", "jurisdiction": "EU"}, timeout=45)
                    ok = status == 201
                else:
                    event = {"id": "pg-ev-%d" % n, "kind": "page_view", "subject": "pg-events@example.com",
                             "timestamp": "2026-12-01T10:%02d:%02dZ" % ((n // 60) % 60, n % 60), "source": "web",
                             "item": "sku-%d" % n, "dwell_ms": 4000, "scroll_depth": 0.5, "referrer": "direct",
                             "device": "Mozilla/5.0 (X11; Linux x86_64)"}
                    status, body, headers = api.call_full("POST", "/v1/events", app, {"events": [event]}, timeout=45)
                    ok = status == 200 and body.get("accepted", 0) + body.get("duplicates", 0) == 1
            except Exception as e:  # a hang past the timeout or a broken connection: both are failures here
                with lock:
                    figures["other"].append("%s during %s" % (type(e).__name__, "outage" if outage.is_set() else "service"))
                continue
            elapsed = time.time() - started
            with lock:
                # The gateway's bound for a write: the write gate's queueing (connect 5 s + statement 10 s) and then
                # its own connect (5 s) and statement wait (statement timeout + 1 s): 31 s.
                if elapsed > 32:
                    figures["slow"] += 1
                if ok:
                    figures["ok"] += 1
                    if n % 2:
                        acked_consents[subject] = granted
                    else:
                        acked_events += body.get("accepted", 0)
                        acked_items.add("sku-%d" % n)
                elif status == 503 and headers.get("Retry-After") and body.get("error", {}).get("code") == "database_unavailable":
                    figures["503"] += 1
                else:
                    figures["other"].append("%d %s" % (status, body.get("error", {}).get("code")))
            time.sleep(0.01)

    # Consent for the subject whose events are stored.
    status, _ = api.call("POST", "/v1/consents", app, {"subject": "pg-events@example.com", "purpose": "personalization",
                                                      "granted": True, "method": "banner", "notice_version": "2026-01",
                                                      "jurisdiction": "EU"})
    check(status == 201, "the first consent was not acknowledged (%d)" % status)
    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    for r in range(a.rounds):
        time.sleep(2)
        before = figures["ok"]
        subprocess.run([SCRATCH, "stop", pgdir], check=True)
        outage.set()
        time.sleep(3)
        status, _ = api.call("GET", "/health/ready", app)
        check(status == 503, "round %d: /health/ready answered %d during the outage" % (r, status))
        subprocess.run([SCRATCH, "start", pgdir, str(port)], check=True, capture_output=True)
        outage.clear()
        back = time.time()
        while time.time() - back < 20 and figures["ok"] == before:
            time.sleep(0.1)
        recovered = time.time()
        while time.time() - recovered < 1.5:
            time.sleep(0.1)
        check(figures["ok"] > before, "round %d: no request succeeded within 20 s of the database's return" % r)
        status, body = api.call("GET", "/health/ready", app)
        check(status == 200, "round %d: /health/ready answered %d after the database came back: %s" % (r, status, body))
    # The claim on the database (one gateway per database until gateways share caches) went with the old session:
    # the readiness checks above took it again, so a second gateway still refuses to start.
    second = subprocess.run([a.veil, "serve", "--port", str(free_port())] + veil.common, capture_output=True, text=True,
                            timeout=60)
    check(second.returncode != 0 and "another veil serve" in second.stderr + second.stdout,
          "a second gateway started on the database after the restarts (exit %d)" % second.returncode)
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    print("answered ok: %d; 503 database_unavailable with Retry-After: %d; other answers: %d; slower than 32 s: %d"
          % (figures["ok"], figures["503"], len(figures["other"]), figures["slow"]))
    check(figures["503"] >= a.rounds, "fewer 503s (%d) than outages: the outages were not seen" % figures["503"])
    check(not figures["other"], "answers other than success or 503 database_unavailable: %s" % figures["other"][:5])
    check(figures["slow"] == 0, "%d requests took longer than 32 s (write queueing, connect and statement bounds)" % figures["slow"])

    # Nothing acknowledged is lost.
    for subject, granted in sorted(acked_consents.items()):
        status, body = api.call("GET", "/v1/consents/" + subject.replace("@", "%40"), officer)
        allowed = body.get("purposes", {}).get("personalization", {}).get("allowed")
        check(status == 200 and allowed == granted, "%s: acknowledged granted=%s, now %s" % (subject, granted, allowed))
    stored = int(psql(url, "SELECT count(*) FROM interactions"))
    check(stored >= acked_events, "%d events acknowledged, %d stored" % (acked_events, stored))
    # Event by event: every acknowledged one is in the subject's export (a count could hide a lost one behind a
    # stored unacknowledged one).
    status, body = api.call("GET", "/v1/subjects/pg-events%40example.com/export", officer, timeout=60)
    exported = {i.get("item") for i in body.get("interactions", [])}
    missing = sorted(acked_items - exported)
    check(status == 200 and not missing, "acknowledged events missing from the export (%d): %s" % (len(missing), missing[:5]))
    print("acknowledged: %d consent subjects, %d events; stored events: %d" % (len(acked_consents), acked_events, stored))
    server.terminate()
    try:
        server.wait(timeout=45)
    except subprocess.TimeoutExpired:
        check(False, "the gateway did not stop within 30 s of SIGTERM")
        server.kill()
        server.wait()
    verify = subprocess.run([a.veil, "audit", "verify"] + veil.common, capture_output=True, text=True)
    check(verify.returncode == 0, "audit verify failed: " + verify.stdout[-300:])
    return check.report(veil.work)


if __name__ == "__main__":
    sys.exit(main())
