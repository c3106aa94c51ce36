#!/usr/bin/env python3
"""Graceful shutdown: SIGTERM the server while clients are sending, and check what `veil serve` promises: the
requests it had begun are finished (a complete 2xx, never a cut or 5xx answer), the process exits 0, the audit log
is signed through its last entry, and every acknowledged event is stored.

Usage: shutdown_test.py [--veil .build/debug/veil] [--rounds 3]
Prints the figures and 'N passed, M failed'; exits 1 on any failure.
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from veil_instance import ROOT, Checks, Instance

CLIENTS = 12
EVENTS_PER_REQUEST = 200


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", default=os.path.join(ROOT, ".build/debug/veil"))
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    veil = Instance(a.veil, "veil-shutdown-")
    work, common, api, port = veil.work, veil.common, veil.api, veil.port
    app, officer = veil.principal("shutdown-app", "app"), veil.principal("shutdown-dpo", "compliance-officer")
    check = Checks()

    def start():
        return veil.start(log_level="info")  # the shutdown tree head is logged at info

    subjects = ["shutdown-%d@example.com" % i for i in range(CLIENTS)]
    acked = []          # (subject, item, time) of every event in an acknowledged request
    finished_after_term = [0]
    base_time = int(time.time()) - 10 * 86400
    server = start()
    for s in subjects:
        status, _ = api.call("POST", "/v1/consents", app, {"subject": s, "purpose": "personalization", "granted": True,
                                                        "method": "banner", "notice_version": "2026-01", "jurisdiction": "EU"})
        check(status == 201, "consent not recorded")

    for rnd in range(a.rounds):
        term_sent = threading.Event()
        lock = threading.Lock()

        def client(c):
            # One keep-alive connection per client, requests back to back until the server closes it.
            n = 0
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while True:
                n += 1
                # Unique times per subject, within the last ten days: (subject, item, time) names an event.
                times = [base_time + rnd * 150_000 + n * EVENTS_PER_REQUEST + k for k in range(EVENTS_PER_REQUEST)]
                batch = [(subjects[c], "sku-%d" % (k % 50), t) for k, t in enumerate(times)]
                events = [{"id": "sd-%d-%d-%d-%d" % (rnd, c, n, k), "kind": "page_view", "subject": s, "item": item,
                           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)), "source": "shutdown-test",
                           "dwell_ms": 1000 + k} for k, (s, item, t) in enumerate(batch)]
                body = json.dumps({"events": events})
                try:
                    conn.request("POST", "/v1/events", body, {"Authorization": "Bearer " + app, "Content-Type": "application/json"})
                    response = conn.getresponse()
                except (ConnectionError, http.client.HTTPException, OSError):
                    return  # closed before any answer: never acknowledged
                try:
                    raw = response.read()
                    answer = json.loads(raw)
                except (ConnectionError, http.client.HTTPException, OSError, ValueError):
                    answer = None
                check(response.status == 200 and answer is not None and answer.get("accepted") == EVENTS_PER_REQUEST,
                      "a request got %d or a cut or short answer during shutdown" % response.status)
                if response.status == 200 and answer is not None:
                    with lock:
                        acked.extend(batch)
                        if term_sent.is_set():
                            finished_after_term[0] += 1
                if term_sent.is_set() and response.getheader("Connection", "").lower() == "close":
                    return

        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        server.send_signal(signal.SIGTERM)
        term_sent.set()
        started = time.time()
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            code = "still running after 30 s"
        stop_time = time.time() - started
        for t in threads:
            t.join()
        check(code == 0, "server exit status after SIGTERM: %s" % code)
        with open(veil.log_path) as f:  # one line per shutdown so far (the log is appended to across restarts)
            check(f.read().count("audit tree head signed at shutdown") == rnd + 1, "no audit tree head logged at this shutdown")
        verify = subprocess.run([a.veil, "audit", "verify"] + common, capture_output=True, text=True)
        m = re.search(r"intact: (\d+) entries, \d+ signed heads, signed through entry (\d+)", verify.stdout)
        check(verify.returncode == 0 and m is not None, "audit verify after shutdown: " + (verify.stdout + verify.stderr).strip())
        if m:
            check(m.group(1) == m.group(2), "audit log not signed through its head after shutdown: " + verify.stdout.strip())
        print("round %d: SIGTERM with %d clients sending; exited %s in %.2f s; %s" % (rnd + 1, CLIENTS, code, stop_time, verify.stdout.strip()))
        server = start()

    # Every acknowledged event is stored.
    stored = set()
    for s in subjects:
        status, body = api.call("GET", "/v1/subjects/%s/export" % urllib.request.quote(s, safe=""), officer, timeout=30)
        check(status == 200, "export failed")
        for it in body.get("interactions", []):
            stored.add((s, it["item"], it["time"]))
    lost = [e for e in acked if e not in stored]
    check(not lost, "%d of %d acknowledged events lost" % (len(lost), len(acked)))
    check(finished_after_term[0] > 0, "no request was finished after SIGTERM: the test did not catch one in flight")
    server.send_signal(signal.SIGTERM)
    server.wait()
    print("acknowledged events: %d, all stored: %s; requests finished after SIGTERM: %d" % (len(acked), not lost, finished_after_term[0]))
    return check.report(work)


if __name__ == "__main__":
    sys.exit(main())
