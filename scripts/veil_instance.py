"""A Veil instance for the script tests (crash_test.py, shutdown_test.py): a temporary directory with generated
keys, principals added through the command line, and `veil serve` started on a free loopback port."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Api:
    def __init__(self, port):
        self.base = "http://127.0.0.1:%d" % port

    def call(self, method, path, key, body=None, timeout=5):
        """Returns (status, decoded JSON body)."""
        status, body, _ = self.call_full(method, path, key, body, timeout)
        return status, body

    def call_full(self, method, path, key, body=None, timeout=5):
        """Returns (status, decoded JSON body, headers); headers is an email.message.Message (case-insensitive get)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}"), r.headers
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}"), e.headers


class Instance:
    def __init__(self, veil, prefix):
        self.veil = veil
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.common = ["--data-dir", self.work + "/data", "--keys", self.work + "/Keys", "--policies", os.path.join(ROOT, "Policies")]
        subprocess.run([veil, "keys", "init"] + self.common, check=True, stdout=subprocess.DEVNULL)
        self.port = free_port()
        self.api = Api(self.port)
        self.log_path = self.work + "/serve.log"

    def principal(self, name, role):
        """Adds a principal with the command line and returns its API key."""
        out = subprocess.run([self.veil, "principals", "add", name, "--role", role] + self.common, check=True, capture_output=True, text=True)
        return out.stdout.strip().splitlines()[-1]

    def start(self, log_level="warning", extra=()):
        """Starts `veil serve` (no scheduled retraining or retention), its output appended to serve.log, and waits
        until it answers."""
        log = open(self.log_path, "ab")
        p = subprocess.Popen([self.veil, "serve", "--port", str(self.port), "--retrain-interval", "0", "--retention-interval", "0",
                              "--log-level", log_level] + list(extra) + self.common, stdout=log, stderr=log)
        log.close()
        for _ in range(200):
            try:
                urllib.request.urlopen(self.api.base + "/health/live", timeout=1)
                return p
            except Exception:
                time.sleep(0.05)
        raise SystemExit("server did not start; see " + self.log_path)


class Checks:
    """Counts checks and keeps the failed ones; client threads may call it at once."""

    def __init__(self):
        self.count, self.failures, self._lock = 0, [], threading.Lock()

    def __call__(self, ok, what):
        with self._lock:
            self.count += 1
            if not ok:
                self.failures.append(what)

    def report(self, work):
        """Prints the failures and the tally; removes the work directory when all passed. Returns the exit status."""
        for f in self.failures[:20]:
            print("FAIL " + f)
        print("%d passed, %d failed" % (self.count - len(self.failures), len(self.failures)))
        if self.failures:
            print("state kept in " + work)
            return 1
        shutil.rmtree(work, ignore_errors=True)
        return 0


class Gateway:
    """One of several `veil serve` processes on one PostgreSQL database (cluster_test.py, cluster_demo.py): its own
    data directory (its audit log) and port, the shared keys, `storage.gateways: several` and a log name of its own."""

    def __init__(self, veil, base, i, url):
        self.veil, self.i = veil, i
        self.data = "%s/gw%d" % (base.work, i)
        self.config = "%s/gw%d.yaml" % (base.work, i)
        with open(self.config, "w") as f:
            f.write("storage:\n  gateways: several\naudit:\n  log_name: gw%d\n" % i)
        self.common = ["--data-dir", self.data, "--keys", base.work + "/Keys", "--policies", os.path.join(ROOT, "Policies"),
                       "--database-url", url, "--config", self.config]
        self.port = free_port()
        self.api = Api(self.port)
        self.log = "%s/gw%d.log" % (base.work, i)
        self.process = None

    def start(self, log_level="warning"):
        log = open(self.log, "ab")
        self.process = subprocess.Popen([self.veil, "serve", "--port", str(self.port), "--retrain-interval", "0",
                                         "--retention-interval", "0", "--log-level", log_level] + self.common,
                                        stdout=log, stderr=log)
        log.close()
        for _ in range(600):
            try:
                urllib.request.urlopen(self.api.base + "/health/live", timeout=1)
                return
            except Exception:
                if self.process.poll() is not None:
                    raise SystemExit("gateway %d exited at start; see %s" % (self.i, self.log))
                time.sleep(0.05)
        raise SystemExit("gateway %d did not start; see %s" % (self.i, self.log))

    def stop(self, timeout=45):
        """SIGTERM (the gateway signs its last audit head); True if it stopped in time."""
        if not self.process or self.process.poll() is not None:
            return True
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False
