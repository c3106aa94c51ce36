#!/usr/bin/env python3
"""Crash safety: kill -9 the server at random moments while a client writes, restart it, and check that nothing
acknowledged was lost and nothing unacknowledged was half-written.

The client's own failures count too, so the test cannot pass by writing nothing: every round must acknowledge at
least MIN_ROUND consent changes and event batches (its random kill delay starts only once it has, or after
FIRST_ACK_WAIT s), the whole run at least MIN_MEAN of each per round on average
(a normal 20-round run acknowledges about 1,300 consent changes and 2,000 batches); a client error is expected only
as the server is killed (refused, reset or cut connection, timeout), any other is a failure, and so is any answer
but 201 to a consent change and 200 accepting the whole batch to an event batch.

Usage: crash_test.py [--veil .build/debug/veil] [--rounds 20] [--seed 1]
Prints the figures and 'N passed, M failed'; exits 1 on any failure.
"""
import argparse
import collections
import http.client
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from veil_instance import ROOT, Checks, Instance

MIN_ROUND = 1   # acknowledged consent changes, and acknowledged event batches, in every round
FIRST_ACK_WAIT = 10  # seconds a round waits for its first MIN_ROUND of each before its random kill delay starts
MIN_MEAN = 5    # of each per round on average over the run
# What a request in flight or sent as the server dies may end in: refused, reset or broken connection (OSError,
# urllib's URLError included), a timeout, a cut answer (http.client: RemoteDisconnected, IncompleteRead; a
# truncated body fails to parse: ValueError).
KILL_ERRORS = (OSError, http.client.HTTPException, ValueError)


def error_name(exc):
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error
    return type(reason if isinstance(reason, BaseException) else exc).__name__


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
    killed_at = [math.inf]       # monotonic time the current round's SIGKILL was sent
    kill_errors = collections.Counter()   # error name -> count, for errors after the kill
    other_errors = []            # client errors while the server was up
    bad_answers = []             # unexpected HTTP answers
    per_round = []               # (acknowledged consent changes, acknowledged event batches)

    def failed(what, exc):
        if isinstance(exc, KILL_ERRORS) and time.monotonic() >= killed_at[0]:
            kill_errors[error_name(exc)] += 1
        else:
            other_errors.append("%s: %s %.200s" % (what, error_name(exc), exc))

    def client(stop, tally, rng):
        # Its own generator (seeded from --seed and the round), so the choices replay whatever the main thread draws.
        while not stop.is_set():
            if rng.random() < 0.4:
                s = rng.choice(churn_subjects)
                granted = rng.random() < 0.5
                try:
                    status, body = api.call("POST", "/v1/consents", app, {"subject": s, "purpose": "marketing", "granted": granted,
                                                                        "method": "settings", "notice_version": "2026-01", "jurisdiction": "EU"})
                    if status == 201:
                        acked_consents.append((s, body["sequence"], granted))
                        tally[0] += 1
                    else:
                        bad_answers.append("consent change answered %d %.200s" % (status, body))
                except Exception as exc:
                    failed("consent change", exc)
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
                        tally[1] += 1
                        continue
                    bad_answers.append("batch of %d events answered %d %.200s" % (len(batch), status, body))
                except Exception as exc:
                    failed("event batch", exc)
                unacked_batches.append([(s, i, t) for _, s, i, t in batch])

    kills = 0
    first_ack_waits = []         # seconds each round waited for its first acknowledgements
    for round_number in range(a.rounds):
        stop = threading.Event()
        tally = [0, 0]
        killed_at[0] = math.inf
        t = threading.Thread(target=client, args=(stop, tally, random.Random("%d-client-%d" % (a.seed, round_number))))
        t.start()
        # The random delay starts once the round has acknowledged MIN_ROUND of each (a loaded machine may take a
        # while to answer the first requests); after FIRST_ACK_WAIT s it starts anyway and the round's check fails.
        waited = time.monotonic()
        deadline = waited + FIRST_ACK_WAIT
        while (tally[0] < MIN_ROUND or tally[1] < MIN_ROUND) and time.monotonic() < deadline and t.is_alive():
            time.sleep(0.01)
        first_ack_waits.append(time.monotonic() - waited)
        time.sleep(rng.uniform(0.2, 1.2))
        killed_at[0] = time.monotonic()
        server.send_signal(signal.SIGKILL)
        server.wait()
        kills += 1
        stop.set()
        t.join()
        per_round.append(tuple(tally))
        server = start()

    check = Checks()

    # The client wrote something in every round, and enough over the run; it met no error but the kill's and no
    # unexpected answer.
    for n, (consents, batches) in enumerate(per_round, 1):
        check(consents >= MIN_ROUND and batches >= MIN_ROUND,
              "round %d acknowledged %d consent changes and %d event batches (at least %d of each expected)" % (n, consents, batches, MIN_ROUND))
    total_consents, total_batches = sum(r[0] for r in per_round), sum(r[1] for r in per_round)
    check(total_consents >= MIN_MEAN * a.rounds, "%d acknowledged consent changes in %d rounds (at least %d expected)"
          % (total_consents, a.rounds, MIN_MEAN * a.rounds))
    check(total_batches >= MIN_MEAN * a.rounds, "%d acknowledged event batches in %d rounds (at least %d expected)"
          % (total_batches, a.rounds, MIN_MEAN * a.rounds))
    check(not other_errors, "%d client errors while the server was up; the first: %s" % (len(other_errors), "; ".join(other_errors[:3])))
    check(not bad_answers, "%d unexpected answers; the first: %s" % (len(bad_answers), "; ".join(bad_answers[:3])))

    # Every acknowledged consent change is in its subject's history with the acknowledged outcome.
    histories = {}
    for s in churn_subjects:
        status, body = api.call("GET", "/v1/consents/%s/history" % urllib.request.quote(s, safe=""), officer)
        check(status == 200, "consent history failed")
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
    print("kills survived: %d; acknowledged consent changes: %d; acknowledged events: %d in %d batches; unacknowledged batches: %d (half-written: %d)"
          % (kills, len(acked_consents), len(acked_events), total_batches, len(unacked_batches), partial))
    if per_round:
        print("acknowledged per round: consent changes %d to %d, event batches %d to %d (at least %d of each expected; in all at least %d)"
              % (min(r[0] for r in per_round), max(r[0] for r in per_round), min(r[1] for r in per_round),
                 max(r[1] for r in per_round), MIN_ROUND, MIN_MEAN * a.rounds))
        print("wait for a round's first acknowledgements before its kill delay: at most %.2f s (limit %d s)" % (max(first_ack_waits), FIRST_ACK_WAIT))
    print("client errors as the server was killed (expected): %d%s; other client errors: %d; unexpected answers: %d"
          % (sum(kill_errors.values()), " (" + ", ".join("%s %d" % kv for kv in kill_errors.most_common()) + ")" if kill_errors else "",
             len(other_errors), len(bad_answers)))
    return check.report(work)


if __name__ == "__main__":
    sys.exit(main())
