"""Reads what `wrk --latency` prints: the load scripts' one parser of it."""
import re

SOCKET_ERRORS = ("connect", "read", "write", "timeout")


def _ms(value):
    m = re.match(r"([\d.]+)([a-z]+)", value)
    x = float(m.group(1))
    return {"us": x / 1000, "ms": x, "s": x * 1000, "m": x * 60_000, "h": x * 3_600_000}[m.group(2)]


def summary(text):
    """requests/s, p50 and p99 in ms, requests sent, non-2xx answers, and the socket errors wrk counted: connect,
    read, write, timeout, and their sum in socket_errors. wrk prints its 'Socket errors' and 'Non-2xx or 3xx
    responses' lines only when they are not zero."""
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    w = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50": _ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1)),
        "p99": _ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1)),
        "total": int(re.search(r"(\d+) requests in", text).group(1)),
        "non2xx": int(bad.group(1)) if bad else 0,
    }
    w.update(zip(SOCKET_ERRORS, (int(x) for x in sock.groups()) if sock else (0, 0, 0, 0)))
    w["socket_errors"] = sum(w[k] for k in SOCKET_ERRORS)
    return w


def problems(w):
    """What went wrong in a summary's run, for a flagged line ('' when every request got a 2xx or 3xx answer)."""
    parts = []
    if w["non2xx"]:
        parts.append("%d non-2xx or 3xx answers" % w["non2xx"])
    if w["socket_errors"]:
        parts.append("%d socket errors (%s)" % (w["socket_errors"], ", ".join("%s %d" % (k, w[k]) for k in SOCKET_ERRORS)))
    return "; ".join(parts)
