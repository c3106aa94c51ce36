#!/usr/bin/env python3
"""Three gateways on one PostgreSQL database (storage.gateways: several), one of them killed with SIGKILL while
clients spread consent changes and event batches over all three, and restarted. Checks what a load balancer's users
rely on:

- the other two keep answering while one is down: every request they get succeeds;
- the killed gateway restarts on its own files and rejoins (it answers and /health/ready is 200 again);
- nothing acknowledged is lost: every consent change answered 201, by any gateway, is in force on every gateway
  afterwards, and every acknowledged event is in the subject's export;
- each gateway's audit log verifies, and any gateway verifies and queries all of them as shipped to the database.

Usage: cluster_test.py [--veil .build/debug/veil] [--rounds 3]
Prints the figures and 'N passed, M failed'; exits 1 on any failure.
"""
import argparse
import os
import subprocess
import sys
import threading
import time

from veil_instance import ROOT, Checks, Gateway, Instance, free_port

SCRATCH = os.path.join(ROOT, "scripts", "pg-scratch.sh")
GATEWAYS = 3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", default=os.path.join(ROOT, ".build/debug/veil"))
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    base = Instance(a.veil, "veil-cluster-")
    pgdir = base.work + "/pg"
    os.makedirs(pgdir)
    os.chmod(base.work, 0o755)
    port = free_port()
    url = subprocess.run([SCRATCH, "start", pgdir, str(port)], check=True, capture_output=True, text=True).stdout.strip()
    gateways = []
    try:
        return run(a, base, url, gateways)
    finally:
        for g in gateways:
            if g.process and g.process.poll() is None:
                g.process.kill()
                g.process.wait()
        subprocess.run([SCRATCH, "stop", pgdir], capture_output=True)


def run(a, base, url, gateways):
    check = Checks()
    base.common += ["--database-url", url]
    app, officer = base.principal("c-app", "app"), base.principal("c-dpo", "compliance-officer")
    for i in range(GATEWAYS):
        # One database, one key; each gateway's audit log named apart, so their signed heads are told apart.
        gateways.append(Gateway(a.veil, base, i, url))
        gateways[-1].start()

    acked_consents = {}   # subject -> granted, for every 201 (writes to one subject go through one client, in order)
    # subject -> values sent since its last 201 whose answer never came (the gateway was killed): each may have
    # committed before the kill, so the state may be any of them; none may be lost once acknowledged.
    unanswered = {}
    acked_items = set()   # the item of each acknowledged event (one event per item, all of one subject)
    down = set()          # gateways killed and not yet back
    stop = threading.Event()
    lock = threading.Lock()
    figures = {"ok": 0, "refused_by_the_killed": 0, "failed_elsewhere": []}
    counter = [0]

    def client(c):
        n = 0
        while not stop.is_set():
            n += 1
            g = gateways[n % GATEWAYS]
            with lock:
                counter[0] += 1
                k = counter[0]
                was_down = g.i in down
            subject = "cl-%d-%d@example.com" % (c, n % 20)
            granted = n % 3 != 0
            try:
                if n % 2:
                    status, body = g.api.call("POST", "/v1/consents", app, {
                        "subject": subject, "purpose": "personalization", "granted": granted, "method": "banner",
                        "notice_version": "2026-01", "jurisdiction": "EU"}, timeout=45)
                    ok = status == 201
                else:
                    event = {"id": "cl-ev-%d" % k, "kind": "page_view", "subject": "cl-events@example.com",
                             "timestamp": "2026-12-01T10:%02d:%02dZ" % ((k // 60) % 60, k % 60), "source": "web",
                             "item": "sku-%d" % k, "dwell_ms": 4000, "scroll_depth": 0.5, "referrer": "direct",
                             "device": "Mozilla/5.0 (X11; Linux x86_64)"}
                    status, body = g.api.call("POST", "/v1/events", app, {"events": [event]}, timeout=45)
                    ok = status == 200 and body.get("accepted", 0) == 1
            except Exception as e:
                with lock:
                    if n % 2:
                        unanswered.setdefault(subject, set()).add(granted)
                    if was_down or g.i in down:
                        figures["refused_by_the_killed"] += 1
                    else:
                        figures["failed_elsewhere"].append("gateway %d: %s" % (g.i, type(e).__name__))
                time.sleep(0.01)
                continue
            with lock:
                if ok:
                    figures["ok"] += 1
                    if n % 2:
                        acked_consents[subject] = granted
                        unanswered.pop(subject, None)
                    else:
                        acked_items.add("sku-%d" % k)
                else:
                    figures["failed_elsewhere"].append("gateway %d: %d %s" % (g.i, status, body.get("error", {}).get("code")))
            time.sleep(0.005)

    status, _ = gateways[0].api.call("POST", "/v1/consents", app, {
        "subject": "cl-events@example.com", "purpose": "personalization", "granted": True, "method": "banner",
        "notice_version": "2026-01", "jurisdiction": "EU"})
    check(status == 201, "the first consent was not acknowledged (%d)" % status)
    threads = [threading.Thread(target=client, args=(c,)) for c in range(3)]
    for t in threads:
        t.start()
    for r in range(a.rounds):
        time.sleep(2)
        victim = gateways[r % GATEWAYS]
        with lock:
            down.add(victim.i)
            before = figures["ok"]
        victim.process.kill()
        victim.process.wait()
        time.sleep(2)
        with lock:
            during = figures["ok"] - before
        check(during > 0, "round %d: no request succeeded on the other gateways while gateway %d was down" % (r, victim.i))
        victim.start()
        with lock:
            down.discard(victim.i)
        status, body = victim.api.call("GET", "/health/ready", app)
        check(status == 200, "round %d: the restarted gateway %d is not ready: %d %s" % (r, victim.i, status, body))
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    print("answered ok: %d; refused by the killed gateway while down: %d; failures on live gateways: %d"
          % (figures["ok"], figures["refused_by_the_killed"], len(figures["failed_elsewhere"])))
    check(not figures["failed_elsewhere"], "requests to live gateways failed: %s" % figures["failed_elsewhere"][:5])

    # Nothing acknowledged is lost, and every gateway sees it.
    for g in gateways:
        for subject, granted in sorted(acked_consents.items()):
            status, body = g.api.call("GET", "/v1/consents/" + subject.replace("@", "%40"), officer)
            allowed = body.get("purposes", {}).get("personalization", {}).get("allowed")
            check(status == 200 and (allowed == granted or allowed in unanswered.get(subject, set())),
                  "gateway %d, %s: acknowledged granted=%s (then unanswered: %s), now %s" % (
                      g.i, subject, granted, sorted(unanswered.get(subject, set())), allowed))
    status, body = gateways[1].api.call("GET", "/v1/subjects/cl-events%40example.com/export", officer, timeout=60)
    exported = {i.get("item") for i in body.get("interactions", [])}
    missing = sorted(acked_items - exported)
    check(status == 200 and not missing, "acknowledged events missing from the export (%d): %s" % (len(missing), missing[:5]))
    print("acknowledged: %d consent subjects, %d events" % (len(acked_consents), len(acked_items)))
    # The audit logs as one: each gateway ships its log to the database within a second; any gateway verifies every
    # log there (the killed one's too) and a query through one finds what all three recorded.
    time.sleep(2)
    status, body = gateways[0].api.call("GET", "/v1/audit/verify", officer, timeout=120)
    logs = {entry.get("log"): entry for entry in body.get("logs", [])}
    check(status == 200 and sorted(logs) == ["gw%d" % g.i for g in gateways],
          "verify through gateway 0 does not cover every log: %d %s" % (status, sorted(logs)))
    broken = {name: entry.get("reason") for name, entry in logs.items() if "firstBadSequence" in entry}
    check(not broken, "a gateway's shipped audit log fails verification: %s" % broken)
    status, body = gateways[1].api.call("GET", "/v1/audit?actor=c-app&limit=1000", officer)
    seen = sorted({entry.get("log") for entry in body.get("entries", [])})
    check(status == 200 and seen == ["gw%d" % g.i for g in gateways],
          "a query through gateway 1 does not see every gateway's entries: %d %s" % (status, seen))
    print("audit: verify through gateway 0 covers %s, all intact; a query through gateway 1 finds entries of %s"
          % (sorted(logs), seen))
    # A witness of gateway 2's log that reaches only gateway 0 (as through a load balancer): it asks for the log by
    # name and gateway 0 answers from the copy; a second run checks the consistency proof between two heads.
    key_file, state = base.work + "/gw2.vkey", base.work + "/witness-gw2"
    with open(key_file, "w") as f:
        f.write(subprocess.run([a.veil, "audit", "key"] + gateways[2].common, capture_output=True, text=True).stdout)
    witnessed = []
    for _ in range(2):
        # Gateway 2 signs a head over its entries so far (this request's among the next); shipped within a second.
        gateways[2].api.call("GET", "/v1/audit/checkpoint", officer)
        time.sleep(2.5)
        run = subprocess.run([a.veil, "audit", "witness", "--url", gateways[0].api.base, "--key", key_file, "--state", state,
                              "--once"], capture_output=True, text=True, timeout=60, env=dict(os.environ, VEIL_API_KEY=officer))
        witnessed.append((run.returncode, run.stdout.strip(), run.stderr.strip()[-200:]))
    check(all(code == 0 and "accepted" in out for code, out, _ in witnessed),
          "a witness of gw2 through gateway 0 failed: %s" % witnessed)
    print("witness of gw2 through gateway 0: %s" % "; ".join(out for _, out, _ in witnessed))
    # A gateway that would not watch the others (gateways: one, the default) is refused beside them.
    lone = subprocess.run([a.veil, "serve", "--port", str(free_port())] + base.common, capture_output=True, text=True, timeout=60)
    check(lone.returncode != 0 and "gateways: several" in lone.stderr + lone.stdout,
          "a gateways: one server started beside gateways: several ones (exit %d)" % lone.returncode)
    # Sharing is for PostgreSQL only: asked of a SQLite file, serve refuses with the fix.
    alone = subprocess.run([a.veil, "serve", "--port", str(free_port()), "--data-dir", base.work + "/alone", "--keys",
                            base.work + "/Keys", "--policies", os.path.join(ROOT, "Policies"), "--config", gateways[0].config],
                           capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "VEIL_DATABASE_URL"})
    check(alone.returncode != 0 and "needs a PostgreSQL database" in alone.stderr + alone.stdout,
          "storage.gateways: several on SQLite was not refused (exit %d): %s" % (alone.returncode, (alone.stderr + alone.stdout)[-200:]))
    for g in gateways:
        check(g.stop(), "gateway %d did not stop within 45 s of SIGTERM" % g.i)
        verify = subprocess.run([a.veil, "audit", "verify"] + g.common, capture_output=True, text=True)
        check(verify.returncode == 0, "gateway %d: audit verify failed: %s" % (g.i, verify.stdout[-300:]))
        key = subprocess.run([a.veil, "audit", "key"] + g.common, capture_output=True, text=True).stdout
        check(key.split("+")[0].endswith("/gw%d" % g.i), "gateway %d: its verifier key names another log: %s" % (g.i, key))
    return check.report(base.work)


if __name__ == "__main__":
    sys.exit(main())
