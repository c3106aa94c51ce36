#!/usr/bin/env python3
"""`make cluster-demo`: PostgreSQL, three gateways on it (storage.gateways: several) and nginx in front of them, all
on loopback in a temporary directory. Runs a shop's story through the load balancer, then shows a withdrawal made
through one gateway obeyed at once by the other two, which had the person's list cached; verifies each gateway's
audit log and stops everything. Exits 1 if any step does not do what it says (make test runs it too).

Usage: cluster_demo.py [--veil .build/release/veil] [--keep]
"""
import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request

from veil_instance import ROOT, Api, Checks, Gateway, Instance, free_port

SCRATCH = os.path.join(ROOT, "scripts", "pg-scratch.sh")
NGINX = "nginx" if subprocess.run(["sh", "-c", "command -v nginx"], capture_output=True).returncode == 0 else "/usr/sbin/nginx"


def step(text):
    print("\n== " + text, flush=True)


def nginx_config(work, port, upstreams):
    """A round-robin load balancer on loopback, naming the gateway that answered in X-Veil-Upstream."""
    tmp = work + "/nginx-tmp"
    os.makedirs(tmp, exist_ok=True)
    os.chmod(tmp, 0o777)
    servers = "".join("    server 127.0.0.1:%d;\n" % p for p in upstreams)
    path = work + "/nginx.conf"
    with open(path, "w") as f:
        f.write("""worker_processes 1;
daemon off;
pid %(work)s/nginx.pid;
error_log %(work)s/nginx-error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %(tmp)s/body; proxy_temp_path %(tmp)s/proxy; fastcgi_temp_path %(tmp)s/fastcgi;
  uwsgi_temp_path %(tmp)s/uwsgi; scgi_temp_path %(tmp)s/scgi;
  upstream veil {
%(servers)s    keepalive 16;
  }
  server {
    listen 127.0.0.1:%(port)d;
    client_max_body_size 1m;
    location / {
      proxy_pass http://veil;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      add_header X-Veil-Upstream $upstream_addr always;
    }
  }
}
""" % {"work": work, "tmp": tmp, "servers": servers, "port": port})
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", default=os.path.join(ROOT, ".build/release/veil"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    started = time.time()
    base = Instance(a.veil, "veil-cluster-demo-")
    pgdir = base.work + "/pg"
    os.makedirs(pgdir)
    os.chmod(base.work, 0o755)
    step("PostgreSQL on loopback (a scratch server of its own)")
    url = subprocess.run([SCRATCH, "start", pgdir, str(free_port())], check=True, capture_output=True, text=True).stdout.strip()
    print("   " + url)
    gateways, nginx = [], None
    try:
        check, nginx = run(a, base, url, gateways)
    finally:
        if nginx and nginx.poll() is None:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(timeout=10)
        for g in gateways:
            g.stop()
        subprocess.run([SCRATCH, "stop", pgdir], capture_output=True)
    step("stopped nginx, the gateways and PostgreSQL in %.1f s" % (time.time() - started))
    if a.keep:
        print("   state kept in " + base.work)
        check.failures or print("   (all steps did what they said)")
        return 1 if check.failures else 0
    return check.report(base.work)


def run(a, base, url, gateways):
    check = Checks()
    base.common += ["--database-url", url]
    keys = {role: base.principal("demo-" + role, role) for role in ["app", "recommendation-client", "compliance-officer", "admin"]}
    step("three gateways on the one database, each with its own data directory and audit log name")
    for i in range(3):
        gateways.append(Gateway(a.veil, base, i, url))
        gateways[-1].start()
        print("   gateway %d on 127.0.0.1:%d (audit log gw%d)" % (i, gateways[-1].port, i))
    lb_port = free_port()
    nginx = subprocess.Popen([NGINX, "-c", nginx_config(base.work, lb_port, [g.port for g in gateways]), "-p", base.work],
                             stdout=subprocess.DEVNULL, stderr=open(base.work + "/nginx.out", "wb"))
    lb = Api(lb_port)
    for _ in range(100):
        try:
            urllib.request.urlopen(lb.base + "/health/live", timeout=1)
            break
        except Exception:
            time.sleep(0.05)
    print("   nginx on 127.0.0.1:%d, round robin over the three" % lb_port)

    step("a shop's story through the load balancer: catalog, consents, browsing")
    items = [{"id": "sku-%d" % n, "title": "Item %d" % n, "category": "apparel/shoes" if n < 10 else "electronics/audio",
              "available": True, "attributes": {}, "tags": []} for n in range(20)]
    status, _ = lb.call("PUT", "/v1/items", keys["app"], {"items": items})
    check(status == 200, "the catalog was refused: %d" % status)
    upstreams = set()
    for s in range(30):
        status, _, headers = lb.call_full("POST", "/v1/consents", keys["app"], {
            "subject": "shopper-%d@example.com" % s, "purpose": "personalization", "granted": True, "method": "banner",
            "notice_version": "2026-01", "jurisdiction": "EU"})
        check(status == 201, "consent %d refused: %d" % (s, status))
        upstreams.add(headers.get("X-Veil-Upstream"))
    events = []
    for s in range(30):
        base_item = 0 if s % 2 == 0 else 10
        for j in range(5):
            events.append({"id": "e-%d-%d" % (s, j), "kind": "page_view", "subject": "shopper-%d@example.com" % s,
                           "timestamp": "2026-11-20T10:%02d:00Z" % j, "source": "web",
                           "item": "sku-%d" % (base_item + (s + j * 3) % 10), "dwell_ms": 4000, "scroll_depth": 0.6,
                           "referrer": "direct", "device": "Mozilla/5.0 (X11; Linux x86_64)"})
    status, body = lb.call("POST", "/v1/events", keys["app"], {"events": events})
    check(status == 200 and body.get("accepted") == len(events), "events: %d %s" % (status, body))
    print("   20 items, 30 consents (answered by %d gateways), %d page views" % (len(upstreams - {None}), len(events)))
    check(len(upstreams - {None}) == 3, "the load balancer did not spread the consents over three gateways: %s" % upstreams)

    step("gateway 0 trains and publishes the model in the database; gateways 1 and 2 load it")
    status, body = gateways[0].api.call("POST", "/v1/model/train", keys["admin"], timeout=120)
    check(status == 200, "gateway 0 did not train: %d %s" % (status, body))
    version = body.get("model_version")
    print("   gateway 0: trained %s" % version)
    for g in gateways[1:]:
        served = None
        for _ in range(100):  # within seconds: read from the database and decoded beside serving
            _, info = g.api.call("GET", "/v1/model/provenance", keys["compliance-officer"])
            served = info.get("model_version")
            if served == version:
                break
            time.sleep(0.1)
        check(served == version, "gateway %d serves %s, not the published %s" % (g.i, served, version))
        print("   gateway %d: serves %s" % (g.i, served))

    person, path = "shopper-0@example.com", "/v1/recommendations/shopper-0%40example.com?k=3"
    step("recommendations for %s through the load balancer" % person)
    for _ in range(3):
        status, body, headers = lb.call_full("GET", path, keys["recommendation-client"])
        check(status == 200 and body.get("personalized") is True, "not personalized before the withdrawal: %d %s" % (status, body))
        print("   from %s: personalized=%s, top %s" % (headers.get("X-Veil-Upstream"), body.get("personalized"),
                                                      [i.get("item") for i in body.get("items", [])]))
    for g in gateways[1:]:
        g.api.call("GET", path, keys["recommendation-client"])  # now in gateways 1 and 2's caches

    step("%s withdraws personalization, through gateway 0" % person)
    status, _ = gateways[0].api.call("POST", "/v1/consents", keys["app"], {
        "subject": person, "purpose": "personalization", "granted": False, "method": "banner", "notice_version": "2026-01"})
    check(status == 201, "the withdrawal was refused: %d" % status)
    print("   gateway 0 answered %d once its announcement was out" % status)
    step("the very next request to gateways 1 and 2, which had the list cached")
    for g in gateways[1:]:
        status, body = g.api.call("GET", path, keys["recommendation-client"])
        check(status == 200 and body.get("personalized") is False, "gateway %d still personalizes: %s" % (g.i, body))
        print("   gateway %d: personalized=%s, top %s" % (g.i, body.get("personalized"), [i.get("item") for i in body.get("items", [])]))

    step("each gateway's audit log: stopped, then verified under its own name")
    for g in gateways:
        check(g.stop(), "gateway %d did not stop within 45 s" % g.i)
        verify = subprocess.run([a.veil, "audit", "verify"] + g.common, capture_output=True, text=True)
        key = subprocess.run([a.veil, "audit", "key"] + g.common, capture_output=True, text=True).stdout.strip()
        check(verify.returncode == 0, "gateway %d: %s" % (g.i, verify.stdout.strip()))
        print("   gateway %d (%s): %s" % (g.i, key.split("+")[0], verify.stdout.strip().splitlines()[0].split(";")[0]))
    return check, nginx


if __name__ == "__main__":
    sys.exit(main())
