#!/usr/bin/env python3
"""The tracking script in a real browser (issue #28): headless Chromium, a sample shop page served for the test from
its own origin with /sdk/veil.js pinned by its integrity hash, and `veil serve`. Checks what a shop and its visitors
rely on:

- before the banner is answered, nothing from the script reaches the gateway (counted at the server) and nothing is
  stored in the browser;
- after consent, a page view with its dwell time and scroll depth, an add-to-cart and a search with its clicked result
  arrive and are stored; no URL, referrer or user agent is sent; a consent already recorded is not sent again;
- after withdrawal, the random id is gone from the browser, the person's data is gone from the gateway, and browsing
  on sends nothing;
- with navigator.globalPrivacyControl set, marketing is withdrawn although the banner said yes;
- the same page from an origin the key does not list is refused, and stores nothing;
- a signed-in person's shop id goes through with the shop's proof, and not with a forged one.

Usage: browser_test.py [--veil .build/debug/veil]. Needs Chromium (`apt-get install -y chromium`).
Prints 'N passed, M failed'; exits 1 on any failure.
"""
import argparse
import hashlib
import hmac
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from cdp import Browser, find_chromium
from veil_instance import ROOT, Checks, Instance, free_port

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Sample shop</title>
<script src="{gateway}/sdk/veil-{version}.js" integrity="{integrity}" crossorigin="anonymous"
        data-key="{key}" data-endpoint="{endpoint}" data-notice="2026-01" data-jurisdiction="EU"{identity}></script>
<script>
  // The shop's own consent banner keeps the person's answer and tells Veil on every page.
  function answer(choice) {{ localStorage.setItem('shop-cmp', JSON.stringify(choice)); veil.consent(choice); }}
  var kept = localStorage.getItem('shop-cmp');
  if (kept) veil.consent(JSON.parse(kept));
</script></head>
<body>
<div id="banner"><button id="accept" onclick="answer({{personalization: true, marketing: true}})">Accept all</button>
<button id="decline" onclick="answer({{personalization: false, marketing: false}})">Decline all</button></div>
{body}
</body></html>"""

ITEM = """<main data-veil-item="{item}" style="height: 5000px"><h1>Item {item}</h1>
<button id="cart" data-veil-add-to-cart="{item}">Add to cart</button></main>"""

SEARCH = """<main data-veil-search="{query}" style="height: 3000px"><h1>Results for {query}</h1>
<a href="#" id="r1" data-veil-result="sku-31">one</a> <a href="#" id="r2" data-veil-result="sku-32">two</a>
<a href="#" id="r3" data-veil-result="sku-33">three</a></main>"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", default=os.path.join(ROOT, ".build/debug/veil"))
    a = ap.parse_args()
    chromium = find_chromium()
    if not chromium:
        raise SystemExit("browser_test: Chromium not found; install it with `apt-get install -y chromium` (make test does, as root)")
    veil = Instance(os.path.abspath(a.veil), "veil-browser-")
    shop_port, other_port = free_port(), free_port()
    shop, other = "http://127.0.0.1:%d" % shop_port, "http://127.0.0.1:%d" % other_port
    made = subprocess.run([veil.veil, "principals", "add", "shop-web", "--role", "browser", "--origin", shop] + veil.common,
                          check=True, capture_output=True, text=True).stdout
    key = made.strip().splitlines()[-1]
    secret = re.search(r"identity secret: (vs_[0-9a-f]{64})", made).group(1)
    officer = veil.principal("dpo", "compliance-officer")
    sdk = subprocess.run([veil.veil, "sdk"], check=True, capture_output=True, text=True).stdout
    integrity = re.search(r"integrity: (sha384-\S+)", sdk).group(1)
    version = re.search(r"veil\.js (\S+):", sdk).group(1)
    server = veil.start(extra=["--config", write_config(veil.work)])
    gateway = veil.api.base
    check = Checks()

    class Shop(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            query = urllib.parse.parse_qs(url.query)
            identity = ""
            if url.path.startswith("/item/"):
                body = ITEM.format(item=url.path.split("/")[-1])
            elif url.path == "/search":
                body = SEARCH.format(query=query["q"][0])
            else:
                self.send_error(404)
                return
            if "subject" in query:
                subject = query["subject"][0]
                # What the shop's server computes for the signed-in person: EXPIRES.hex(HMAC-SHA256(secret, "EXPIRES|id")).
                expires = int(time.time()) + 3600
                mac = hmac.new(secret.encode(), ("%d|%s" % (expires, subject)).encode(), hashlib.sha256).hexdigest()
                proof = query.get("proof", ["%d.%s" % (expires, mac)])[0]
                identity = ' data-subject="%s" data-proof="%s"' % (subject, proof)
            html = PAGE.format(gateway=gateway, endpoint=relay_base, version=version, integrity=integrity, key=key, identity=identity,
                               body=body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args):
            pass

    class Relay(http.server.BaseHTTPRequestHandler):
        """The shop's reverse proxy in front of the gateway: passes the script's requests on, unchanged, and keeps
        a copy of each (DevTools does not report the beacons a page sends as it goes away)."""
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            entry = {"path": self.path, "origin": self.headers.get("Origin"), "referer": self.headers.get("Referer"), "body": body}
            relayed.append(entry)
            forward = {h: self.headers[h] for h in ("Origin", "Content-Type", "Sec-GPC") if self.headers.get(h)}
            request = urllib.request.Request(gateway + self.path, data=body, method="POST", headers=forward)
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    status, headers, answer = r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                status, headers, answer = e.code, e.headers, e.read()
            entry["status"] = status
            self.send_response(status)
            for h in ("Content-Type", "Access-Control-Allow-Origin", "Vary"):
                if headers.get(h):
                    self.send_header(h, headers[h])
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    relayed = []
    relay_port = free_port()
    relay_base = "http://127.0.0.1:%d" % relay_port
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", port), Shop) for port in (shop_port, other_port)]
    servers.append(http.server.ThreadingHTTPServer(("127.0.0.1", relay_port), Relay))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    browser = Browser(chromium)
    try:
        run(browser, veil, gateway, relay_base, relayed, shop, other, officer, check)
    finally:
        browser.close()
        for s in servers:
            s.shutdown()
        server.terminate()
        server.wait(timeout=30)
    return check.report(veil.work)


def write_config(work):
    # Lenient quality thresholds (the few events here are no source's data quality).
    path = work + "/browser.yaml"
    with open(path, "w") as f:
        f.write("quality:\n  max_reject_rate: 1\n  max_duplicate_rate: 1\n  min_completeness: 0\n")
    return path


def server_counts(gateway):
    """(requests to the routes a page may send to, or to no route; consent changes recorded), from the server's own
    /metrics: the test's own calls (exports, consent states, the audit) go to other routes."""
    text = urllib.request.urlopen(gateway + "/metrics", timeout=5).read().decode()
    sent = consents = 0
    page_routes = ['route="/v1/events"', 'route="/v1/feedback"', 'route="/v1/consents"', 'route="unmatched"']
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if "_count{" in name and any(r in name for r in page_routes):
            sent += int(float(value))
        elif name.startswith("veil_consent_changes_total"):
            consents += int(float(value))
    return sent, consents


def wait_for(what, predicate, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return None


def run(browser, veil, gateway, relay, relayed, shop, other, officer, check):
    api = veil.api

    def export(subject):
        status, body = api.call("GET", "/v1/subjects/%s/export" % urllib.parse.quote(subject, safe=""), officer)
        check(status == 200, "export of %s answered %d" % (subject, status))
        return body

    def consent_state(subject):
        status, body = api.call("GET", "/v1/consents/%s" % urllib.parse.quote(subject, safe=""), officer)
        check(status == 200, "consent state of %s answered %d" % (subject, status))
        return {p: s.get("allowed") for p, s in body.get("purposes", {}).items()}

    def stored_id(page):
        raw = page.evaluate("localStorage.getItem('veil')")
        return json.loads(raw)["id"] if raw else None

    def browse(page, url, dwell=1.2):
        page.goto(url)
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        time.sleep(dwell)

    # 1. Before consent: a visitor browses, scrolls, adds to cart; nothing reaches the gateway, nothing is stored.
    page = browser.new_page()
    before = server_counts(gateway)
    browse(page, shop + "/item/sku-7")
    check(page.evaluate("typeof veil === 'object' && veil.version") == "1.0.0",
          "the script did not run on the page (its integrity hash or CORS header failed?)")
    page.evaluate("document.getElementById('cart').click()")
    browse(page, shop + "/item/sku-8", dwell=0.5)
    time.sleep(1)
    to_gateway = [r for r in page.requests() if r[1].startswith(gateway) and "/sdk/" not in r[1]] + relayed
    check(not to_gateway, "before consent the page sent %d request(s) to the gateway: %s" % (len(to_gateway), to_gateway[:2]))
    check(server_counts(gateway) == before, "before consent the server counted requests: %s then %s" % (before, server_counts(gateway)))
    check(page.evaluate("Object.keys(localStorage).join(',')") == "", "the script stored something before consent")
    print("before consent: %d requests to the gateway, nothing stored in the browser" % len(to_gateway))

    # 2. Consent: the choice is recorded once, then page views (dwell, scroll), add-to-cart and searches arrive.
    page.evaluate("document.getElementById('accept').click()")
    subject = wait_for("the random id", lambda: stored_id(page))
    check(subject is not None and re.fullmatch(r"anon-[0-9a-f]{32}", subject or ""), "no random id stored after consent: %r" % subject)
    if subject is None:
        return
    state = wait_for("consent recorded", lambda: consent_state(subject).get("personalization") and consent_state(subject))
    check(bool(state) and state.get("marketing") is True, "consent after Accept all: %s" % state)
    time.sleep(1.3)  # on sku-8, scrolled to the bottom: this view's dwell time
    browse(page, shop + "/item/sku-9", dwell=0.3)
    page.evaluate("document.getElementById('cart').click()")
    browse(page, shop + "/search?q=red+shoes", dwell=0.3)
    page.evaluate("document.getElementById('r2').click()")
    browse(page, shop + "/item/sku-10", dwell=0.3)
    wanted = {("sku-8", "page_view"), ("sku-9", "add_to_cart"), ("sku-32", "search_click")}
    got = wait_for("events stored", lambda: (lambda s: s if wanted <= s else None)(
        {(i["item"], i["kind"]) for i in export(subject).get("interactions", [])}))
    check(got is not None, "stored after consent: %s, wanted at least %s" % (
        sorted({(i["item"], i["kind"]) for i in export(subject).get("interactions", [])}), sorted(wanted)))
    sent = [e for r in relayed if r["path"].startswith("/v1/events") for e in json.loads(r["body"])["events"]]
    views = [e for e in sent if e.get("kind") == "page_view" and e.get("item") == "sku-8"]
    check(len(views) == 1, "page views of sku-8 sent: %d" % len(views))
    if views:
        v = views[0]
        check(v.get("dwell_ms", 0) >= 1000 and v.get("dwell_ms", 0) < 60_000, "dwell of sku-8: %s ms" % v.get("dwell_ms"))
        check(v.get("scroll_depth", 0) >= 0.9, "scroll depth of sku-8: %s" % v.get("scroll_depth"))
        print("page view sent: item %s, dwell %d ms, scroll depth %.2f" % (v["item"], v["dwell_ms"], v["scroll_depth"]))
    ua = page.evaluate("navigator.userAgent")
    allowed = {"id", "kind", "subject", "timestamp", "source", "item", "dwell_ms", "scroll_depth", "query", "shown", "clicked", "signal"}
    for e in sent:
        check(set(e) <= allowed, "an event sent fields beyond the script's list: %s" % sorted(set(e) - allowed))
        text = json.dumps(e)
        check("http" not in text and "127.0.0.1" not in text and ua not in text, "an event carries a URL or the user agent: %s" % text[:200])
    gateway_urls = [relay + r["path"] for r in relayed]
    check(all(set(urllib.parse.parse_qs(urllib.parse.urlparse(u).query)) <= {"key", "proof"} for u in gateway_urls),
          "a request to the gateway carries more than key and proof in its URL")
    consents_sent = [u for u in gateway_urls if "/v1/consents" in u]
    check(len(consents_sent) == 2, "the choice was sent %d times over five pages (once per purpose expected)" % len(consents_sent))
    check(all(r["origin"] == shop for r in relayed), "a request without the page's origin: %s" % {r["origin"] for r in relayed})
    # The page's path never goes with them: no Referer, or the origin alone (beacons follow the page's policy).
    referers = {r["referer"] for r in relayed}
    check(referers <= {None, shop + "/"}, "a request carried the page's address: %s" % referers)
    print("after consent: stored %s" % sorted(got or []))

    # 3. Withdrawal: the random id goes, the gateway shreds the person's data, and nothing more is sent.
    page.evaluate("document.getElementById('decline').click()")
    check(wait_for("id removed", lambda: stored_id(page) is None) is not None or stored_id(page) is None, "the random id stayed after withdrawal")
    withdrawn = wait_for("withdrawal recorded", lambda: consent_state(subject).get("personalization") is False)
    check(withdrawn is not None, "withdrawal not recorded: %s" % consent_state(subject))
    body = export(subject)
    check(not body.get("has_data") and not body.get("interactions"), "data left after withdrawal: %s" % str(body)[:300])
    after = server_counts(gateway)
    browse(page, shop + "/item/sku-11")
    page.evaluate("document.getElementById('cart').click()")
    browse(page, shop + "/item/sku-12", dwell=0.3)
    time.sleep(1)
    check(server_counts(gateway)[0] == after[0], "after withdrawal the server counted more requests: %s then %s" % (after, server_counts(gateway)))
    check(page.evaluate("localStorage.getItem('veil')") is None, "the script stored something after withdrawal")
    print("after withdrawal: data gone, nothing sent")

    # 4. Global Privacy Control: marketing withdrawn although the banner said yes.
    gpc = browser.new_page()
    gpc.send("Page.addScriptToEvaluateOnNewDocument",
             {"source": "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true, configurable: true});"})
    browse(gpc, shop + "/item/sku-20", dwell=0.2)
    gpc.evaluate("document.getElementById('accept').click()")
    person = wait_for("gpc id", lambda: stored_id(gpc))
    state = person and wait_for("gpc state", lambda: (lambda s: s if s.get("personalization") else None)(consent_state(person)))
    check(bool(state) and state.get("marketing") is False, "with GPC, after Accept all: %s" % state)
    status, history = api.call("GET", "/v1/consents/%s/history" % person, officer) if person else (0, {})
    methods = [e.get("event", e).get("method") for e in history.get("events", [])]
    check("gpc" in methods, "no GPC event in the ledger: %s" % methods)
    print("with GPC: marketing %s, ledger methods %s" % (state and state.get("marketing"), methods))

    # 5. The same page from an origin the key does not list: refused, nothing recorded or stored.
    stranger = browser.new_page()
    before = server_counts(gateway)
    browse(stranger, other + "/item/sku-21", dwell=0.2)
    stranger.evaluate("document.getElementById('accept').click()")
    time.sleep(1.5)
    browse(stranger, other + "/item/sku-22", dwell=0.2)
    time.sleep(1)
    now = server_counts(gateway)
    check(now[1] == before[1], "consents recorded from an unlisted origin: %s then %s" % (before, now))
    # The banner's answer is retried on each page until recorded: two pages, two purposes, all refused.
    check(now[0] - before[0] == 4, "requests from an unlisted origin: %d (4 consent calls, refused, expected)" % (now[0] - before[0]))
    check(stranger.evaluate("localStorage.getItem('veil')") is None, "the script kept an id although the gateway refused the consent")
    status, audit = api.call("GET", "/v1/audit?outcome=denied&limit=1000", officer)
    reasons = [e["record"]["reason"] for e in audit.get("entries", [])]
    check(any("origin not configured" in r for r in reasons), "no audit entry for the refused origin: %s" % reasons[-3:])
    print("from an unlisted origin: %d refused requests, nothing recorded" % (now[0] - before[0]))

    # 6. A signed-in person: the shop's id with the shop's proof, and a forged proof refused.
    member = browser.new_page()
    browse(member, shop + "/item/sku-40?subject=customer-77", dwell=0.2)
    member.evaluate("document.getElementById('accept').click()")
    state = wait_for("member consent", lambda: (lambda s: s if s.get("personalization") else None)(consent_state("customer-77")))
    check(bool(state), "the signed-in person's consent was not recorded: %s" % consent_state("customer-77"))
    browse(member, shop + "/item/sku-41?subject=customer-77", dwell=1.0)
    browse(member, shop + "/item/sku-42?subject=customer-77", dwell=0.2)
    got = wait_for("member events", lambda: any(i["item"] == "sku-41" for i in export("customer-77").get("interactions", [])))
    check(bool(got), "the signed-in person's page view was not stored")
    forger = browser.new_page()
    seen = len(relayed)
    forged = "%d.%s" % (int(time.time()) + 3600, "0" * 64)
    browse(forger, shop + "/item/sku-43?subject=customer-78&proof=" + forged, dwell=0.2)
    forger.evaluate("document.getElementById('accept').click()")
    refused = wait_for("forged refused", lambda: [r for r in relayed[seen:] if "status" in r] or None)
    check(bool(refused) and all(r["status"] == 403 for r in refused), "a forged proof was not refused: %s" % [r.get("status") for r in relayed[seen:]])
    check(consent_state("customer-78").get("personalization") is False, "a forged proof recorded consent")
    print("signed in: consent and page view stored with the shop's proof; a forged proof refused")

    # 7. A change of mind before the grant is recorded: the withdrawal follows it, and nothing is kept.
    racer = browser.new_page()
    browse(racer, shop + "/item/sku-50", dwell=0.2)
    seen = len(relayed)
    racer.evaluate("answer({personalization: true, marketing: false}); answer({personalization: false, marketing: false})")
    time.sleep(2)
    grants = [json.loads(r["body"]) for r in relayed[seen:] if r["path"].startswith("/v1/consents")]
    subjects = {g["subject"] for g in grants}
    check(len(subjects) == 1, "the change of mind named %d subjects: %s" % (len(subjects), grants))
    if len(subjects) == 1:
        person = subjects.pop()
        check(consent_state(person).get("personalization") is False, "granted and at once withdrawn, the ledger says %s" % consent_state(person))
    check(racer.evaluate("localStorage.getItem('veil')") is None, "an id was kept after the change of mind")
    print("granted then withdrawn at once: %d consent calls, ends withdrawn, nothing kept" % len(grants))

    # 8. The per-client limit: one address exhausting its bucket leaves another's untouched.
    def post_from(address):
        import http.client
        body = json.dumps({"subject": "anon-" + "ab" * 16, "purpose": "analytics", "granted": False, "method": "banner",
                           "notice_version": "2026-01"})
        c = http.client.HTTPConnection("127.0.0.1", int(gateway.rsplit(":", 1)[1]), timeout=5, source_address=(address, 0))
        c.request("POST", "/v1/consents?key=" + page_key, body, {"Origin": shop, "Content-Type": "text/plain"})
        status = c.getresponse().status
        c.close()
        return status
    page_key = re.search(r'data-key="([^"]+)"', urllib.request.urlopen(shop + "/item/sku-1").read().decode()).group(1)
    statuses = [post_from("127.0.0.3") for _ in range(40)]
    check(201 in statuses and 429 in statuses, "40 calls from one address: %s" % sorted(set(statuses)))
    check(post_from("127.0.0.4") == 201, "another address was limited with the first")
    print("rate limit per client: one address %d x 201 then 429; another address still served" % statuses.count(201))


if __name__ == "__main__":
    sys.exit(main())
