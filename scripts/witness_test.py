#!/usr/bin/env python3
"""The witness against a live server (issue #23): `veil audit witness --once` accepts the log's signed heads while the
log grows, then exits 3 (and says ALERT) once the log was cut on disk and the server restarted on it; the heads the
witness kept, given to `veil audit verify --trusted-head`, fail the cut log too; and one byte of an entry changed in
the file fails `veil audit verify` at that entry.

Usage: witness_test.py [--veil .build/debug/veil]
Prints 'N passed, M failed'; exits 1 on any failure.
"""
import argparse
import os
import sqlite3
import subprocess
import time

from veil_instance import ROOT, Checks, Instance


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", default=os.path.join(ROOT, ".build/debug/veil"))
    a = ap.parse_args()
    veil = Instance(a.veil, "veil-witness-")
    work, common, api = veil.work, veil.common, veil.api
    app, witness_key = veil.principal("w-app", "app"), veil.principal("w-witness", "witness")
    check = Checks()
    key_file, state = work + "/log.vkey", work + "/witness"
    with open(key_file, "w") as f:
        f.write(subprocess.run([a.veil, "audit", "key"] + common, check=True, capture_output=True, text=True).stdout)

    def witness():
        # The gateway signs at most one head a second on request; wait that out so the head covers the traffic.
        time.sleep(1.1)
        env = dict(os.environ, VEIL_API_KEY=witness_key)
        return subprocess.run([a.veil, "audit", "witness", "--url", api.base, "--key", key_file, "--state", state, "--once"],
                              env=env, capture_output=True, text=True, timeout=60)

    def traffic(n):
        for i in range(n):
            api.call("GET", "/v1/consents/w-%d" % i, app)

    server = veil.start()
    try:
        traffic(30)
        first = witness()
        check(first.returncode == 0 and "accepted" in first.stdout, "first check: %d %s %s" % (first.returncode, first.stdout, first.stderr))
        traffic(40)
        second = witness()
        check(second.returncode == 0 and "accepted" in second.stdout, "second check: %d %s %s" % (second.returncode, second.stdout, second.stderr))
        heads = sorted(int(n.split(".")[0]) for n in os.listdir(state + "/heads"))
        check(len(heads) == 2 and heads[0] < heads[1], "witness holds two growing heads: %s" % heads)
        again = witness()
        check(again.returncode == 0, "an honest log keeps passing: %s" % again.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)

    # The operator (or an intruder) cuts the log's tail and the heads past it, then restarts the server on it.
    db = sqlite3.connect(work + "/data/audit.sqlite")
    db.executescript("""
        DROP TRIGGER IF EXISTS entries_no_delete; DROP TRIGGER IF EXISTS tree_heads_no_delete;
        DELETE FROM entries WHERE seq > 20; DELETE FROM tree_heads WHERE size > 20; DELETE FROM tree_nodes;
    """)
    db.commit()
    db.close()
    alone = subprocess.run([a.veil, "audit", "verify"] + common, capture_output=True, text=True)
    check(alone.returncode == 0 and "internal consistency only" in alone.stdout, "the cut log verifies on its own, and says so: " + alone.stdout)
    server = veil.start()
    try:
        cut = witness()
        check(cut.returncode == 3 and "ALERT" in cut.stderr and "backwards" in cut.stderr,
              "the witness refuses the cut log: %d %s %s" % (cut.returncode, cut.stdout, cut.stderr))
    finally:
        server.terminate()
        server.wait(timeout=30)
    verify = subprocess.run([a.veil, "audit", "verify", "--trusted-head", state + "/heads"] + common, capture_output=True, text=True)
    check(verify.returncode == 1 and "cut" in verify.stdout, "verify against the witness's heads fails: %d %s" % (verify.returncode, verify.stdout))

    # Privacy check 10 on the real file, through the command an officer runs: one byte of entry 12's stored request
    # id changed on disk (the WAL copied into the file first) fails `veil audit verify` with exit 1, naming entry 12.
    db = sqlite3.connect(work + "/data/audit.sqlite")
    request_id = db.execute("SELECT request_id FROM entries WHERE seq = 12").fetchone()[0].encode()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(work + "/data/audit.sqlite", "r+b") as f:
        data = f.read()
        at = data.find(request_id)
        check(at >= 0 and data.find(request_id, at + 1) < 0, "entry 12's request id is stored once in the file")
        f.seek(at + len(request_id) // 2)
        f.write(bytes([data[at + len(request_id) // 2] ^ 0x01]))
    flipped = subprocess.run([a.veil, "audit", "verify"] + common, capture_output=True, text=True)
    check(flipped.returncode == 1 and "FAILED verification at entry 12:" in flipped.stdout,
          "a changed byte of entry 12 fails verify at entry 12: %d %s %s" % (flipped.returncode, flipped.stdout, flipped.stderr))
    raise SystemExit(check.report(work))


if __name__ == "__main__":
    main()
