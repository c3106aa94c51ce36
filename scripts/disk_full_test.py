#!/usr/bin/env python3
"""A full disk: the data directory (operational database and audit log) and the key directory (the key store,
subject-keys.sqlite) on one small tmpfs, filled while clients write; new subjects keep arriving, so key-store
writes meet the full disk too. Checks what the README promises: every write is either acknowledged or refused
with 503 `storage_full` and `Retry-After` (never a 500), readiness is 503 while the disk is full, the server
recovers by itself once space returns, nothing acknowledged is lost (each acknowledged event's item and time is in
its subject's export, each acknowledged consent change in the history), and the audit log and the consent ledger
verify.

The tmpfs is mounted only inside a private mount namespace, so the kernel drops it however the test ends: the
script re-executes itself under `unshare -m` as root, `unshare -rm` (a user namespace too) otherwise, and stops with
what to fix when namespaces are unavailable. On failure the tmpfs's contents are copied to <work>/state first.
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
PROBES = 500           # single-event writes tried once the disk is full; one must be refused
NAMESPACE_ENV = "VEIL_DISKFULL_OUTER_MNT_NS"


def mount_namespace():
    return os.readlink("/proc/self/ns/mnt")


def enter_private_mount_namespace():
    """Re-executes this script in a private mount namespace (once), so the tmpfs cannot outlive it."""
    outer = os.environ.get(NAMESPACE_ENV)
    if outer is not None:
        if mount_namespace() == outer:
            raise SystemExit("%s is set but this process is still in the outer mount namespace; unset it" % NAMESPACE_ENV)
        return
    if not shutil.which("unshare"):
        raise SystemExit("disk_full_test: `unshare` not found; install util-linux")
    root = os.geteuid() == 0
    flags = "-m" if root else "-rm"
    probe = subprocess.run(["unshare", flags, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        fix = ("give the process CAP_SYS_ADMIN (in a container: --cap-add SYS_ADMIN --security-opt seccomp=unconfined, or --privileged)"
               if root else
               "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0; "
               "on Ubuntu 23.10+ also kernel.apparmor_restrict_unprivileged_userns=0), or run as root")
        raise SystemExit("disk_full_test: cannot create a private mount namespace (`unshare %s true` failed: %s). The tmpfs is mounted "
                         "only inside one so that it never outlives the test. To fix: %s."
                         % (flags, (probe.stderr or probe.stdout).strip() or "exit %d" % probe.returncode, fix))
    os.environ[NAMESPACE_ENV] = mount_namespace()
    sys.stdout.flush()
    os.execvp("unshare", ["unshare", flags, sys.executable] + sys.argv)


def ready(api):
    try:
        with urllib.request.urlopen(api.base + "/health/ready", timeout=5) as r:
            return r.status, {}
    except urllib.error.HTTPError as e:
        import json
        return e.code, json.loads(e.read() or b"{}")


def storage_full(status, body):
    return status == 503 and isinstance(body.get("error"), dict) and body["error"].get("code") == "storage_full"


def retry_after_ok(headers):
    value = headers.get("Retry-After") if headers is not None else None
    return value is not None and value.strip().isdigit() and int(value) > 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", default=os.path.join(ROOT, ".build/debug/veil"))
    a = ap.parse_args()
    enter_private_mount_namespace()
    veil = Instance(os.path.abspath(a.veil), "veil-diskfull-")
    # One tmpfs for data/ and Keys/: the key store fills with the rest. `keys init` wrote Keys/ outside it; moved in.
    fs = veil.work + "/fs"
    os.makedirs(fs)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % SIZE_MB, "tmpfs", fs], check=True)
    data, keys = fs + "/data", fs + "/Keys"
    shutil.copytree(veil.work + "/Keys", keys)
    shutil.rmtree(veil.work + "/Keys")
    os.makedirs(data)
    veil.common = ["--data-dir", data, "--keys", keys, "--policies", os.path.join(ROOT, "Policies")]
    check = Checks()
    server = None
    failed = False
    try:
        app, officer = veil.principal("full-app", "app"), veil.principal("full-dpo", "compliance-officer")
        # Lenient data-quality thresholds: readiness must speak of the disk alone (the synthetic events are sparse).
        config = veil.work + "/lenient.yaml"
        with open(config, "w") as f:
            f.write("quality:\n  max_reject_rate: 1\n  max_duplicate_rate: 1\n  min_completeness: 0\n")
        server = veil.start(extra=["--config", config])
        api = veil.api

        def grant(subject):
            return api.call_full("POST", "/v1/consents", app, {"subject": subject, "purpose": "personalization", "granted": True,
                                                              "method": "banner", "notice_version": "2026-01", "jurisdiction": "EU"})

        consented = []
        for i in range(200):
            subject = "full-%d@example.com" % i
            status, body, _ = grant(subject)
            check(status == 201, "consent before filling answered %d" % status)
            if status == 201:
                consented.append(subject)
        # Leave about 1.5 MB: the rest of the filesystem is one filler file, deleted later to give space back.
        st = os.statvfs(fs)
        filler = fs + "/filler"
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 1_500_000))
        acked_events, acked_consents, refused, other = {}, [], 0, []
        no_retry_after = []
        with_events = set()      # subjects with an acknowledged event batch
        first_writes = 0         # acknowledged first event batches of a subject new since the filler: each created a key
        n = 0
        base = int(time.time()) - 5 * 86400
        full_streak = 0
        while full_streak < 8 and n < 4000:
            n += 1
            if n % 3 == 0:
                # A new subject every third request: its first event batch writes a new key to the key store.
                subject = "fresh-%d@example.com" % n
                status, body, headers = grant(subject)
                ok = status == 201
                if ok:
                    acked_consents.append((subject, body["sequence"]))
                    consented.append(subject)
            else:
                subject = consented[-1] if n % 3 == 1 else consented[n % len(consented)]
                batch = [{"id": "e-%d-%d" % (n, i), "kind": "page_view", "subject": subject, "timestamp": (base + n * 100 + i) * 1000,
                          "source": "web", "item": "sku-%d" % (i % 50), "dwell_ms": 1000} for i in range(EVENTS_PER_BATCH)]
                status, body, headers = api.call_full("POST", "/v1/events", app, {"events": batch})
                ok = status == 200 and body.get("accepted", 0) + body.get("duplicates", 0) == len(batch)
                if ok and body.get("anonymized", 0) == 0:
                    for e in batch:
                        acked_events[e["id"]] = (subject, e["item"], e["timestamp"] // 1000)
                    if subject not in with_events and subject.startswith("fresh-"):
                        first_writes += 1
                    with_events.add(subject)
            if ok:
                full_streak = 0
                continue
            if storage_full(status, body):
                refused += 1
                full_streak += 1
                if not retry_after_ok(headers):
                    no_retry_after.append("request %d: Retry-After %r" % (n, headers.get("Retry-After") if headers is not None else None))
            else:
                other.append("%d %s" % (status, str(body)[:200]))
                full_streak = 0
        check(refused > 0, "the disk never filled in %d requests" % n)
        check(not other, "%d answers other than success or 503 storage_full; the first: %s" % (len(other), "; ".join(other[:3])))
        check(not no_retry_after, "%d of %d storage_full answers without a positive Retry-After; the first: %s"
              % (len(no_retry_after), refused, "; ".join(no_retry_after[:3])))
        status, body = ready(api)
        check(storage_full(status, body), "readiness answered %d %s while the disk was full" % (status, body))
        # Writes while the disk is full: refused with storage_full and Retry-After. A small write may still fit in
        # pages SQLite freed (a rolled-back transaction, a checkpoint) or in the write-ahead log's reusable frames, so
        # probes may be acknowledged for a while; each acknowledged one must be stored like any other, and within a
        # bounded number of probes the full disk must refuse one. Every answer is one of the two.
        probes_refused, probes_acked, probe_other = 0, 0, []
        p = 0
        while p < PROBES and probes_refused < 2:
            probe = {"id": "probe-%d" % p, "kind": "page_view", "subject": consented[-1], "timestamp": (base - 10 - p) * 1000,
                     "source": "web", "item": "probe", "dwell_ms": 1000}
            status, body, headers = api.call_full("POST", "/v1/events", app, {"events": [probe]})
            if status == 200 and body.get("accepted") == 1:
                acked_events[probe["id"]] = (consented[-1], "probe", base - 10 - p)
                probes_acked += 1
            elif storage_full(status, body) and retry_after_ok(headers):
                probes_refused += 1
            else:
                probe_other.append("%d %s, Retry-After %r" % (status, str(body)[:200], headers.get("Retry-After") if headers else None))
            p += 1
        check(probes_refused > 0 and not probe_other,
              "%d single-event writes while the disk was full: %d refused with storage_full and Retry-After, %d acknowledged; "
              "other answers: %s" % (p, probes_refused, probes_acked, "; ".join(probe_other) or "none"))
        # Space returns: the server recovers by itself.
        os.remove(filler)
        deadline = time.time() + 15
        while time.time() < deadline and ready(api)[0] != 200:
            time.sleep(0.2)
        status, body = ready(api)
        check(status == 200, "readiness did not recover within 15 s of space returning: %d %s (free %d bytes)"
              % (status, body, os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize))
        status, body = api.call("POST", "/v1/events", app, {"events": [{"id": "after", "kind": "page_view", "subject": "full-1@example.com",
                                                                         "timestamp": base * 1000, "source": "web", "item": "sku-1"}]})
        check(status == 200 and body.get("accepted") == 1, "a write after recovery answered %d %s" % (status, body))
        if status == 200 and body.get("accepted") == 1:
            acked_events["after"] = ("full-1@example.com", "sku-1", base)
        # Nothing acknowledged is lost: each acknowledged event's (item, time) is in its subject's export.
        stored = {}
        for s in sorted({s for s, _, _ in acked_events.values()}):
            status, body = api.call("GET", "/v1/subjects/%s/export" % urllib.request.quote(s, safe=""), officer, timeout=30)
            check(status == 200, "export of %s answered %d" % (s, status))
            stored[s] = {(it["item"], it["time"]) for it in body.get("interactions", [])}
        lost = sorted(e for e, (s, item, t) in acked_events.items() if (item, t) not in stored[s])
        check(not lost, "%d of %d acknowledged events lost; the first: %s" % (len(lost), len(acked_events), ", ".join(lost[:5])))
        histories = {}
        for s, seq in acked_consents:
            if s not in histories:
                status, body = api.call("GET", "/v1/consents/%s/history" % urllib.request.quote(s, safe=""), officer)
                check(status == 200, "consent history of %s answered %d" % (s, status))
                histories[s] = {e["sequence"] for e in body.get("events", [])}
            check(seq in histories[s], "acknowledged consent %d missing" % seq)
        server.terminate()
        server.wait(timeout=30)
        server = None
        for cmd in (["audit", "verify"], ["consent", "verify"]):
            r = subprocess.run([veil.veil] + cmd + veil.common, capture_output=True, text=True)
            check(r.returncode == 0, " ".join(cmd) + " failed: " + (r.stdout + r.stderr).strip()[:300])
        key_store = sum(os.path.getsize(keys + "/subject-keys.sqlite" + x) for x in ("", "-wal") if os.path.exists(keys + "/subject-keys.sqlite" + x))
        print("requests: %d; acknowledged: %d consent changes, %d events (%d first writes of a new subject's key); "
              "refused with storage_full: %d (all with Retry-After: %s); other answers: %d; key store %d bytes on the filled tmpfs"
              % (n, len(acked_consents), len(acked_events), first_writes, refused, "yes" if not no_retry_after else "no", len(other), key_store))
    except BaseException:
        failed = True
        raise
    finally:
        if server is not None:
            server.kill()
            server.wait()
        if failed or check.failures:
            # Keep what the tmpfs held: it is gone once unmounted (or when the namespace ends).
            shutil.copytree(fs, veil.work + "/state", symlinks=True, ignore=shutil.ignore_patterns("filler"), dirs_exist_ok=True)
            print("the tmpfs's data/ and Keys/ copied to " + veil.work + "/state")
        r = subprocess.run(["umount", fs], capture_output=True, text=True)
        check(r.returncode == 0, "umount %s failed: %s" % (fs, (r.stderr or r.stdout).strip()))
    return check.report(veil.work)


if __name__ == "__main__":
    sys.exit(main())
