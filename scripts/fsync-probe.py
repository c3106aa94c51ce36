#!/usr/bin/env python3
"""fdatasync latency of a file that grows against one rewritten in place (40 pages of 4 KiB per sync).

Run it beside a load (for example during scripts/bench-serve.sh) to see what the disk charges for a sync while
the server is busy. Usage: scripts/fsync-probe.py [DIRECTORY]  (default: a temporary directory)
"""
import os, statistics, sys, tempfile, time


def probe(path, grow, syncs=60, pages=40):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if not grow:
            os.write(fd, b"\0" * (4096 * pages * syncs))
            os.fsync(fd)
        page, times = b"x" * 4096, []
        for i in range(syncs):
            for j in range(pages):
                os.pwrite(fd, page, (i * pages + j) * 4096)
            start = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)]


directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fsync-probe-")
for grow in (True, False, True, False):
    label = "file grows      " if grow else "rewritten in place"
    print("%s: median %.2f ms, p90 %.2f ms" % ((label,) + probe(os.path.join(directory, "probe.bin"), grow)))
