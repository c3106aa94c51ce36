#!/usr/bin/env python3
"""Crash safety: kill -9 the server at random moments while a client writes, restart it, and check that nothing
acknowledged was lost and nothing unacknowledged was half-written.

Usage: crash_test.py [--veil .build/debug/veil] [--rounds 20] [--seed 1]
Prints the figures and 'N passed, M failed'; exits 1 on any failure.
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from veil_instance import ROOT, Checks, Instance


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", default=os.path.join(ROOT, ".build/debug/veil"))
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    veil = Instance(a.veil, "veil-crash-")
    work, common, api, start = veil.work, veil.common, veil.api, veil.start
    app, officer = veil.principal("crash-app", "app"), veil.principal("crash-dpo", "compliance-officer")

    event_subjects = ["crash-e-%d@example.com" % i for i in range(20)]
    churn_subjects = ["crash-c-%d@example.com" % i for i in range(20)]
    server = start()
    for s in event_subjects:
        status, _ = api.call("POST", "/v1/consents", app, {"subject": s, "purpose": "personalization", "granted": True,
                                                        "method": "banner", "notice_version": "2026-01", "jurisdiction": "EU"})
        assert status == 201, status

    acked_consents = []          # (subject, sequence, granted)
    acked_events = {}            # event id -> (subject, item, time)
    unacked_batches = []         # [(subject, item, time), ...]
    counter = [0]
    base_time = int(time.time()) - 20 * 86400

    def client(stop):
        while not stop.is_set():
            if rng.random() < 0.4:
                s = rng.choice(churn_subjects)
                granted = rng.random() < 0.5
                try:
                    status, body = api.call("POST", "/v1/consents", app, {"subject": s, "purpose": "marketing", "granted": granted,
                                                                        "method": "settings", "notice_version": "2026-01", "jurisdiction": "EU"})
                    if status == 201:
                        acked_consents.append((s, body["sequence"], granted))
                except Exception:
                    pass
            else:
                batch = []
                for _ in range(rng.randint(1, 10)):
                    counter[0] += 1
                    n = counter[0]
                    batch.append(("ev-%d" % n, rng.choice(event_subjects), "sku-%d" % (n % 50), base_time + 10 * n))
                events = [{"id": e, "kind": "page_view", "subject": s, "timestamp": t * 1000, "source": "crash", "item": i}
                          for e, s, i, t in batch]
                try:
                    status, body = api.call("POST", "/v1/events", app, {"events": events})
                    if status == 200 and body.get("accepted", 0) + body.get("duplicates", 0) == len(batch):
                        for e, s, i, t in batch:
                            acked_events[e] = (s, i, t)
                        continue
                except Exception:
                    pass
                unacked_batches.append([(s, i, t) for _, s, i, t in batch])

    kills = 0
    for _ in range(a.rounds):
        stop = threading.Event()
        t = threading.Thread(target=client, args=(stop,))
        t.start()
        time.sleep(rng.uniform(0.2, 1.2))
        server.send_signal(signal.SIGKILL)
        server.wait()
        kills += 1
        stop.set()
        t.join()
        server = start()

    check = Checks()

    # Every acknowledged consent change is in its subject's history with the acknowledged outcome.
    histories = {}
    for s in churn_subjects:
        status, body = api.call("GET", "/v1/consents/%s/history" % urllib.request.quote(s, safe=""), officer)
        histories[s] = {e["sequence"]: e["event"]["granted"] for e in body.get("events", [])}
    for s, seq, granted in acked_consents:
        check(histories[s].get(seq) == granted, "acknowledged consent %d of a churn subject missing or changed" % seq)
    # The current state equals the last ledger event per subject.
    for s in churn_subjects:
        if not histories[s]:
            continue
        last = histories[s][max(histories[s])]
        status, body = api.call("GET", "/v1/consents/%s" % urllib.request.quote(s, safe=""), app)
        check(body["purposes"]["marketing"]["allowed"] == last, "state of a churn subject differs from its last ledger event")
    # Every acknowledged event is stored; every unacknowledged batch is wholly present or wholly absent.
    stored = set()
    for s in event_subjects:
        status, body = api.call("GET", "/v1/subjects/%s/export" % urllib.request.quote(s, safe=""), officer)
        check(status == 200, "export failed")
        for it in body.get("interactions", []):
            stored.add((s, it["item"], it["time"]))
    for e, (s, i, t) in acked_events.items():
        check((s, i, t) in stored, "acknowledged event %s lost" % e)
    partial = 0
    for batch in unacked_batches:
        present = sum(1 for x in batch if x in stored)
        check(present in (0, len(batch)), "unacknowledged batch half-written (%d of %d)" % (present, len(batch)))
        partial += present not in (0, len(batch))
    # The secrets scan over what the crash left behind (databases, -wal, -shm, the server log), while the
    # restarted server still holds its WAL open.
    with open(work + "/subjects.txt", "w") as f:
        f.write("\n".join(event_subjects + churn_subjects))
    with open(work + "/api-keys.txt", "w") as f:
        f.write(app + "\n" + officer)
    scan = subprocess.run([sys.executable, os.path.join(ROOT, "scripts/secrets_scan.py"), work, "--subjects", work + "/subjects.txt",
                           "--keys", work + "/api-keys.txt", "--extra", work + "/serve.log"], capture_output=True, text=True)
    check(scan.returncode == 0, "secrets scan found something:\n" + scan.stdout)
    print(scan.stdout.strip().splitlines()[-2])
    server.send_signal(signal.SIGTERM)
    server.wait()
    for cmd in (["audit", "verify"], ["consent", "verify"]):
        r = subprocess.run([a.veil] + cmd + common, capture_output=True, text=True)
        check(r.returncode == 0, " ".join(cmd) + " failed: " + (r.stdout + r.stderr).strip())
        print(r.stdout.strip())
    print("kills survived: %d; acknowledged consent changes: %d; acknowledged events: %d; unacknowledged batches: %d (half-written: %d)"
          % (kills, len(acked_consents), len(acked_events), len(unacked_batches), partial))
    return check.report(work)


if __name__ == "__main__":
    sys.exit(main())
