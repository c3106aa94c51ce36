#!/usr/bin/env python3
"""The compliance console in a real browser (issue #26): headless Chromium against `veil serve` on loopback, with a
few people's consents and events sent through the API first. An officer signs in, searches a person's entries,
checks integrity, opens a consent history, erases a person with the typed confirmation and sees the outcome and its
audit entry; a recommendation client's key is refused; a form without its CSRF token is refused; and no page, no
browser console message and no server log line holds a raw subject id other than the one the officer typed on that
page. A screenshot of each page goes to the folder printed at the end.

Usage: console_test.py [--veil .build/debug/veil] [--screenshots DIR]. Needs Chromium (`apt-get install -y chromium`).
Prints 'N passed, M failed'; exits 1 on any failure.
"""
import argparse
import base64
import os
import sys
import tempfile
import time
import urllib.parse

from cdp import Browser, find_chromium
from veil_instance import ROOT, Checks, Instance

PEOPLE = ["ada@example.com", "bob@example.com", "cy@example.com"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", default=os.path.join(ROOT, ".build/debug/veil"))
    ap.add_argument("--screenshots", default=None)
    a = ap.parse_args()
    chromium = find_chromium()
    if not chromium:
        raise SystemExit("console_test: Chromium not found; install it with `apt-get install -y chromium` (make test does, as root)")
    shots = a.screenshots or tempfile.mkdtemp(prefix="veil-console-screenshots-")
    os.makedirs(shots, exist_ok=True)
    veil = Instance(os.path.abspath(a.veil), "veil-console-")
    app, officer, recs = veil.principal("shop", "app"), veil.principal("dpo", "compliance-officer"), veil.principal("recs", "recommendation-client")
    config = veil.work + "/lenient.yaml"
    with open(config, "w") as f:
        f.write("quality:\n  max_reject_rate: 1\n  max_duplicate_rate: 1\n  min_completeness: 0\n")
    server = veil.start(log_level="info", extra=["--config", config])
    check = Checks()
    api = veil.api
    now = int(time.time() * 1000)
    for n, person in enumerate(PEOPLE):
        status, _ = api.call("POST", "/v1/consents", app, {"subject": person, "purpose": "personalization", "granted": True, "method": "banner",
                                                          "notice_version": "2026-01", "jurisdiction": "EU"})
        check(status == 201, "consent for %s answered %d" % (person, status))
        events = [{"id": "e-%d-%d" % (n, i), "kind": "page_view", "subject": person, "timestamp": now - 3_600_000 + i * 1000, "source": "web",
                   "item": "sku-%d" % i, "dwell_ms": 4000} for i in range(5)]
        status, _ = api.call("POST", "/v1/events", app, {"events": events})
        check(status == 200, "events for %s answered %d" % (person, status))
        status, _ = api.call("GET", "/v1/recommendations/%s?k=3" % urllib.parse.quote(person), recs)
        check(status == 200, "recommendations for %s answered %d" % (person, status))
    browser = Browser(chromium)
    pages = []  # (name, typed id or None, html)
    try:
        page = browser.new_page()
        page.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})

        def snap(name, typed=None):
            html = page.evaluate("document.documentElement.outerHTML")
            pages.append((name, typed, html))
            data = page.send("Page.captureScreenshot", {"format": "png"})["data"]
            with open(os.path.join(shots, "%02d-%s.png" % (len(pages), name)), "wb") as f:
                f.write(base64.b64decode(data))
            return html

        def submit(form_selector, values):
            """Fills the fields of the form and presses its button, as a person would, then waits for the next page."""
            old = page.evaluate("location.href + ' ' + performance.timeOrigin")
            script = "(() => { const f = document.querySelector(%r); %s f.querySelector('button').click(); })()" % (
                form_selector, "".join("f.querySelector('[name=%s]').value = %r;" % (k, v) for k, v in values.items()))
            page.evaluate(script)
            deadline = time.time() + 15
            while time.time() < deadline:
                try:
                    if page.evaluate("location.href + ' ' + performance.timeOrigin") != old and page.evaluate("document.readyState") == "complete":
                        return
                except RuntimeError:
                    pass
                time.sleep(0.05)
            raise TimeoutError("the form %s led nowhere" % form_selector)

        def text():
            return page.evaluate("document.body.innerText")

        base = api.base
        # A recommendation client's key is refused with a page that says why.
        page.goto(base + "/console/signin")
        snap("signin")
        submit("form", {"key": recs})
        check("cannot sign in" in text(), "a recommendation client's key was not refused: %s" % text()[:200])
        snap("refused")
        # The officer signs in.
        page.goto(base + "/console/signin")
        submit("form", {"key": officer})
        check(page.evaluate("location.pathname") == "/console/audit", "sign-in led to %s" % page.evaluate("location.pathname"))
        check(page.evaluate("document.cookie") == "", "the session cookie is readable by scripts")
        snap("access-log")
        # A person's entries, found by the id the officer types.
        submit("form.search", {"subject": PEOPLE[0]})
        found = text()
        check("consent:write" in found and "recommendations:read" in found, "the search by id did not find the person's requests: %s" % found[-400:])
        check("Next page" not in found, "a next page offered for a short list")
        check(PEOPLE[0] not in page.evaluate("location.href"), "the person's id is in the address")
        snap("search", PEOPLE[0])
        first = page.evaluate("document.querySelector('tbody a') && document.querySelector('tbody a').getAttribute('href')")
        if first:
            page.goto(base + first)
            check("Inclusion proof" in text(), "an entry's page has no proof section")
            snap("entry")
        page.goto(base + "/console/integrity")
        check("Intact" in text(), "integrity: %s" % text()[:200])
        snap("integrity")
        page.goto(base + "/console/subjects")
        submit("form.search", {"subject": PEOPLE[0]})
        record = text()
        check("banner" in record and "granted" in record and "EU" in record, "the consent history is missing: %s" % record[:300])
        snap("record", PEOPLE[0])
        # A form without its CSRF token: refused, nothing erased.
        page.goto(base + "/console/subjects")
        submit("form.search", {"subject": PEOPLE[1]})
        page.evaluate("document.querySelector('form.danger [name=csrf]').remove()")
        submit("form.danger", {"confirm": PEOPLE[1]})
        check("security token" in text(), "a form without its token was not refused: %s" % text()[:200])
        snap("csrf-refused")
        status, body = api.call("GET", "/v1/subjects/%s/export" % urllib.parse.quote(PEOPLE[1]), officer)
        check(body.get("has_data") is True, "data went although the form was refused")
        # Erasure with the typed confirmation: its outcome and its audit entry.
        page.goto(base + "/console/subjects")
        submit("form.search", {"subject": PEOPLE[1]})
        snap("record-before-erasure", PEOPLE[1])
        submit("form.danger", {"confirm": PEOPLE[1]})
        outcome = text()
        check("Erased" in outcome and "audit entry" in outcome, "the erasure's outcome: %s" % outcome[:200])
        snap("erased")
        status, body = api.call("GET", "/v1/subjects/%s/export" % urllib.parse.quote(PEOPLE[1]), officer)
        check(body.get("has_data") is False, "the person's data is still there after the console's erasure")
        page.goto(base + "/console/operations")
        check("Data quality" in text() and page.evaluate("document.querySelectorAll('svg').length") >= 1, "the operations page lacks its charts")
        snap("operations")
        submit("form.signout", {})
        check(page.evaluate("location.pathname") == "/console/signin", "sign-out led to %s" % page.evaluate("location.pathname"))
        page.goto(base + "/console/audit")
        check("Sign in" in text(), "after sign-out the access log still opened")
        # No raw subject id anywhere but where it was typed: pages, the browser's console, the server's log.
        for name, typed, html in pages:
            leaked = [p for p in PEOPLE if p in html and p != typed]
            check(not leaked, "page %s shows %s" % (name, leaked))
        messages = [str(p) for s, m, p in browser.events if m in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded")]
        check(not any(p in m for m in messages for p in PEOPLE), "the browser's console holds a subject id")
        check(not any("Content Security Policy" in m for m in messages), "a page broke its own Content-Security-Policy: %s" % messages[:2])
    finally:
        browser.close()
        server.terminate()
        server.wait(timeout=30)
    # The command line, for the same officer: entries by the person's id, readable times, the lookup itself audited.
    import json
    import subprocess
    r = subprocess.run([veil.veil, "audit", "query", "--subject", PEOPLE[0], "--from", time.strftime("%Y-%m-%d", time.gmtime()), "--json"]
                       + veil.common, capture_output=True, text=True)
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    check(r.returncode == 0 and any(l["action"] == "consent:write" for l in lines), "veil audit query --subject: %s %s" % (r.stdout[-300:], r.stderr[-300:]))
    check(all(re_iso(l["time"]) for l in lines) and "\\/" not in r.stdout, "veil audit query prints epoch times or escaped slashes")
    r = subprocess.run([veil.veil, "audit", "query", "--actor", "cli", "--action", "audit:read", "--json"] + veil.common, capture_output=True, text=True)
    check(any("looked up from the command line" in json.loads(l)["reason"] for l in r.stdout.splitlines() if l.strip()),
          "the command line's lookup of a person's entries was not audited")
    with open(veil.log_path, errors="replace") as f:
        log = f.read()
    check(not any(p in log for p in PEOPLE), "the server log holds a subject id")
    print("console: %d pages checked; screenshots in %s" % (len(pages), shots))
    return check.report(veil.work)


def re_iso(value):
    import re
    return re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", value) is not None


if __name__ == "__main__":
    sys.exit(main())
