"""A small Chrome DevTools Protocol client over `--remote-debugging-pipe`: headless Chromium driven with the standard
library alone (no WebDriver, no websocket package). Messages are JSON, each ended by a NUL byte; the browser reads
commands on its fd 3 and writes answers and events on its fd 4."""
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    def __init__(self, binary):
        self.profile = tempfile.mkdtemp(prefix="veil-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def child_fds():
            # Moved above 10 first: a pipe end may already be fd 3 or 4 (dup2 onto itself would keep it close-on-exec,
            # and the second dup2 could overwrite the first's source).
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--remote-debugging-pipe",
             "--user-data-dir=" + self.profile, "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=child_fds)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next = 0
        self._lock = threading.Lock()
        self._answers = {}
        self._answered = threading.Condition(self._lock)
        self.events = []  # (session id, method, params), in arrival order
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                with self._lock:
                    self._answers[None] = {"error": {"message": "the browser closed its pipe"}}
                    self._answered.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._lock:
                    if "id" in message:
                        self._answers[message["id"]] = message
                        self._answered.notify_all()
                    else:
                        self.events.append((message.get("sessionId"), message.get("method"), message.get("params", {})))

    def send(self, method, params=None, session=None, timeout=30):
        """Sends one command and returns its result; raises on an error answer or when none comes in `timeout` s."""
        with self._lock:
            self._next += 1
            ident = self._next
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        with self._lock:
            while ident not in self._answers and None not in self._answers:
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError("no answer to %s in %d s" % (method, timeout))
                self._answered.wait(left)
            answer = self._answers.pop(ident, None) or self._answers[None]
        if "error" in answer:
            raise RuntimeError("%s: %s" % (method, answer["error"].get("message")))
        return answer.get("result", {})

    def new_page(self, isolated=True):
        """A new tab, in a fresh browser context (its own storage) when `isolated`; returns a Page."""
        params = {"url": "about:blank"}
        if isolated:
            params["browserContextId"] = self.send("Target.createBrowserContext")["browserContextId"]
        target = self.send("Target.createTarget", params)["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session, target)
        for domain in ("Page", "Runtime", "Network", "Log"):
            page.send(domain + ".enable")
        return page

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser, session, target):
        self.browser, self.session, self.target = browser, session, target

    def send(self, method, params=None, timeout=30):
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def evaluate(self, expression, await_promise=False):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": await_promise})
        if "exceptionDetails" in result:
            raise RuntimeError("%s: %s" % (expression[:80], result["exceptionDetails"].get("text")))
        return result.get("result", {}).get("value")

    def goto(self, url, timeout=20):
        """Navigates and waits until the document has loaded."""
        self.send("Page.navigate", {"url": url})
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.evaluate("document.readyState + ' ' + location.href") == "complete " + url:
                    return
            except RuntimeError:
                pass  # the old document went away mid-evaluation
            time.sleep(0.05)
        raise TimeoutError("%s did not load in %d s" % (url, timeout))

    def requests(self):
        """The requests this page sent so far: (method, url, post data or None)."""
        return [(p["request"]["method"], p["request"]["url"], p["request"].get("postData"))
                for s, m, p in list(self.browser.events) if s == self.session and m == "Network.requestWillBeSent"]
