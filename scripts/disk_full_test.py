#!/usr/bin/env python3
"""A full disk: the data directory (operational database and audit log) on a small tmpfs, filled while clients
write. Checks what the README promises: every write is either acknowledged or refused with 503 `storage_full` and
`Retry-After` (never a 500), readiness is 503 while the disk is full, the server recovers by itself once space
returns, nothing acknowledged is lost, and the audit log and the consent ledger verify.

Needs to mount a tmpfs: as root directly, otherwise inside a user and mount namespace (`unshare -rm`).
Usage: disk_full_test.py [--veil .build/debug/veil]
Prints the figures and 'N passed, M failed'; exits 1 on any failure.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

from veil_instance import ROOT, Checks, Instance

SIZE_MB = 16
EVENTS_PER_BATCH = 40


def ready(api):
    try:
        with urllib.request.urlopen(api.base + "/health/ready", timeout=5) as r:
            return r.status, {}
    except urllib.error.HTTPError as e:
        import json
        return e.code, json.loads(e.read() or b"{}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", default=os.path.join(ROOT, ".build/debug/veil"))
    a = ap.parse_args()
    if os.geteuid() != 0 and not os.environ.get("VEIL_IN_NAMESPACE"):
        if not shutil.which("unshare"):
            raise SystemExit("not root and no `unshare`: run as root, or install util-linux")
        os.environ["VEIL_IN_NAMESPACE"] = "1"
        os.execvp("unshare", ["unshare", "-rm", sys.executable] + sys.argv)
    veil = Instance(os.path.abspath(a.veil), "veil-diskfull-")
    data = veil.work + "/data"
    os.makedirs(data, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % SIZE_MB, "tmpfs", data], check=True)
    check = Checks()
    server = None
    try:
        app, officer = veil.principal("full-app", "app"), veil.principal("full-dpo", "compliance-officer")
        # Lenient data-quality thresholds: readiness must speak of the disk alone (the synthetic events are sparse).
        config = veil.work + "/lenient.yaml"
        with open(config, "w") as f:
            f.write("quality:\n  max_reject_rate: 1\n  max_duplicate_rate: 1\n  min_completeness: 0\n")
        server = veil.start(extra=["--config", config])
        api = veil.api
        for i in range(200):
            status, body = api.call("POST", "/v1/consents", app, {"subject": "full-%d@example.com" % i, "purpose": "personalization", "granted": True,
                                                                "method": "banner", "notice_version": "2026-01", "jurisdiction": "EU"})
            check(status == 201, "consent before filling answered %d" % status)
        # Leave about 1.5 MB: the rest of the filesystem is one filler file, deleted later to give space back.
        st = os.statvfs(data)
        filler = data + "/filler"
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 1_500_000))
        acked_events, acked_consents, refused, other = {}, [], 0, []
        n = 0
        base = int(time.time()) - 5 * 86400
        full_streak = 0
        while full_streak < 8 and n < 4000:
            n += 1
            subject = "full-%d@example.com" % (n % 200)
            if n % 3 == 0:
                status, body = api.call("POST", "/v1/consents", app, {"subject": subject, "purpose": "personalization", "granted": True,
                                                                    "method": "banner", "notice_version": "2026-01", "jurisdiction": "EU"})
                ok = status == 201
                if ok:
                    acked_consents.append((subject, body["sequence"]))
            else:
                batch = [{"id": "e-%d-%d" % (n, i), "kind": "page_view", "subject": subject, "timestamp": (base + n * 100 + i) * 1000,
                          "source": "web", "item": "sku-%d" % (i % 50), "dwell_ms": 1000} for i in range(EVENTS_PER_BATCH)]
                status, body = api.call("POST", "/v1/events", app, {"events": batch})
                ok = status == 200 and body.get("accepted", 0) + body.get("duplicates", 0) == len(batch)
                if ok and body.get("anonymized", 0) == 0:
                    for e in batch:
                        acked_events[e["id"]] = subject
            if ok:
                full_streak = 0
                continue
            if status == 503 and body.get("error", {}).get("code") == "storage_full":
                refused += 1
                full_streak += 1
            else:
                other.append("%d %s" % (status, str(body)[:200]))
                full_streak = 0
        check(refused > 0, "the disk never filled in %d requests" % n)
        check(not other, "%d answers other than success or 503 storage_full; the first: %s" % (len(other), "; ".join(other[:3])))
        status, body = ready(api)
        check(status == 503 and body.get("error", {}).get("code") == "storage_full", "readiness answered %d %s while the disk was full" % (status, body))
        # Retry-After on the refusal.
        req = urllib.request.Request(api.base + "/v1/events", data=b'{"events":[{"id":"x","kind":"page_view","subject":"s","timestamp":0,"source":"web","item":"i"}]}',
                                     method="POST", headers={"Authorization": "Bearer " + app, "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=5)
        except urllib.error.HTTPError as e:
            check(e.code != 503 or e.headers.get("Retry-After") is not None, "503 without Retry-After")
        # Space returns: the server recovers by itself.
        os.remove(filler)
        deadline = time.time() + 15
        while time.time() < deadline and ready(api)[0] != 200:
            time.sleep(0.2)
        status, body = ready(api)
        check(status == 200, "readiness did not recover within 15 s of space returning: %d %s (free %d bytes)"
              % (status, body, os.statvfs(data).f_bavail * os.statvfs(data).f_frsize))
        status, body = api.call("POST", "/v1/events", app, {"events": [{"id": "after", "kind": "page_view", "subject": "full-1@example.com",
                                                                         "timestamp": base * 1000, "source": "web", "item": "sku-1"}]})
        check(status == 200, "a write after recovery answered %d %s" % (status, body))
        if status == 200:
            acked_events["after"] = "full-1@example.com"
        # Nothing acknowledged is lost.
        per_subject = {}
        for s in acked_events.values():
            per_subject[s] = per_subject.get(s, 0) + 1
        for s, count in per_subject.items():
            status, body = api.call("GET", "/v1/subjects/%s/export" % urllib.request.quote(s, safe=""), officer, timeout=30)
            check(status == 200 and len(body.get("interactions", [])) >= count,
                  "%s: %d acknowledged events, %d stored" % (s, count, len(body.get("interactions", []))))
        histories = {}
        for s, seq in acked_consents:
            if s not in histories:
                status, body = api.call("GET", "/v1/consents/%s/history" % urllib.request.quote(s, safe=""), officer)
                histories[s] = {e["sequence"] for e in body.get("events", [])}
            check(seq in histories[s], "acknowledged consent %d missing" % seq)
        server.terminate()
        server.wait(timeout=30)
        server = None
        for cmd in (["audit", "verify"], ["consent", "verify"]):
            r = subprocess.run([veil.veil] + cmd + veil.common, capture_output=True, text=True)
            check(r.returncode == 0, " ".join(cmd) + " failed: " + (r.stdout + r.stderr).strip()[:300])
        print("requests: %d; acknowledged: %d consent changes, %d events; refused with storage_full: %d; other answers: %d"
              % (n, len(acked_consents), len(acked_events), refused, len(other)))
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["umount", data], check=False)
    return check.report(veil.work)


if __name__ == "__main__":
    sys.exit(main())
