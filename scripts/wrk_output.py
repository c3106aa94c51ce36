"""Reads what `wrk --latency` prints: the load scripts' one parser of it."""
import re


def _ms(value):
    m = re.match(r"([\d.]+)([a-z]+)", value)
    x = float(m.group(1))
    return x / 1000 if m.group(2) == "us" else x * 1000 if m.group(2) == "s" else x


def summary(text):
    """requests/s, p50 and p99 in ms, requests sent and non-2xx answers."""
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50": _ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1)),
        "p99": _ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1)),
        "total": int(re.search(r"(\d+) requests in", text).group(1)),
        "non2xx": int(bad.group(1)) if bad else 0,
    }
