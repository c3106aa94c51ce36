#!/usr/bin/env python3
"""Scans a Veil state directory (databases, WAL files, logs, exports) for secrets that must never be at rest in
clear: raw subject ids, e-mail addresses, API keys and key bytes (raw, hex and base64 forms).

Usage: secrets_scan.py STATE_DIR [--subjects FILE] [--keys FILE] [--extra FILE ...]
  STATE_DIR        a directory holding data/ (databases) and Keys/ (key files; scanned *for*, not *in*)
  --subjects FILE  newline-separated raw subject ids used (default: none beyond the e-mail pattern)
  --keys FILE      newline-separated API keys handed out
  --extra FILE     more files to scan (server log, audit export)
Exit 1 and list every hit when anything is found; prints 'N passed, 0 failed' otherwise.
"""
import base64
import os
import re
import sys


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    state = args[0]
    subjects, api_keys, extra = [], [], []
    i = 1
    while i < len(args):
        if args[i] == "--subjects":
            subjects += [l.strip() for l in open(args[i + 1]) if l.strip()]
            i += 2
        elif args[i] == "--keys":
            api_keys += [l.strip() for l in open(args[i + 1]) if l.strip()]
            i += 2
        elif args[i] == "--extra":
            extra.append(args[i + 1])
            i += 2
        else:
            print("unknown argument " + args[i])
            return 2
    needles = {}
    for s in subjects:
        needles["subject " + s[:6] + "…"] = s.encode()
    for k in api_keys:
        needles["api key " + k[:8] + "…"] = k.encode()
    keys_dir = os.path.join(state, "Keys")
    for name in sorted(os.listdir(keys_dir)) if os.path.isdir(keys_dir) else []:
        if name.endswith(".key"):
            raw = open(os.path.join(keys_dir, name), "rb").read()
            needles["key bytes of " + name] = raw
            needles["hex of " + name] = raw.hex().encode()
    for label, value in list(needles.items()):
        if len(value) >= 12:
            needles[label + " (base64)"] = base64.b64encode(value).rstrip(b"=")
    files = list(extra)
    data_dir = os.path.join(state, "data")
    for root, _, names in os.walk(data_dir):
        files += [os.path.join(root, n) for n in names]
    # Any e-mail-shaped text in logs and exports. Not applied to database files: 14 MB of ciphertext contains
    # random byte runs of that shape; the known subject ids (e-mail addresses here) are searched there instead.
    email = re.compile(rb"[A-Za-z0-9._%+-]{2,}@[A-Za-z0-9-]{2,}\.[A-Za-z]{2,}")
    text_files = set(extra)
    hits, checks = [], 0
    for path in files:
        blob = open(path, "rb").read()
        for label, value in needles.items():
            checks += 1
            if value and value in blob:
                hits.append("%s: %s" % (path, label))
        if path not in text_files:
            continue
        checks += 1
        m = email.search(blob)
        if m:
            hits.append("%s: e-mail address %s…" % (path, m.group(0)[:6].decode(errors="replace")))
    for h in hits:
        print("FOUND " + h)
    print("scanned %d files (%d bytes) for %d secrets" % (len(files), sum(os.path.getsize(f) for f in files), len(needles)))
    print("%d passed, %d failed" % (checks - len(hits), len(hits)))
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main())
