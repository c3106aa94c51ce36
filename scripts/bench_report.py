#!/usr/bin/env python3
"""Prints Veil's and the peers' tables from one bench run (implicit's models; the numpy EASE), with medians and ratios."""
import json
import os
import re
import statistics
import sys

out = sys.argv[1]
PAIRS = [("popularity", "popularity"), ("als", "ALS alpha=1"), ("bpr", "BPR"), ("item-knn", "item-kNN cosine"),
         ("item-knn-bm25", "item-kNN BM25"), ("ease", "numpy EASE (2 threads)")]

def veil_rows(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows.setdefault(r["model"], []).append(r)
    return {m: {"precision": rs[0]["precision"], "recall": rs[0]["recall"], "ndcg": rs[0]["ndcg"], "map": rs[0]["map"],
                "coverage": rs[0]["coverage"], "train_s": statistics.median(r["train_s"] for r in rs),
                "score_s": statistics.median(r["score_s"] for r in rs)} for m, rs in rows.items()}

def numpy_ease(path):
    """The EASE line of baseline_ease_sansa.py, as a peer row (None when it did not run)."""
    if not os.path.exists(path):
        return None
    for line in open(path):
        if line.startswith("EASE (numpy, dense)"):
            f = dict(re.findall(r"(P@10|R@10|NDCG@10|MAP@10|cov|fit|top10) ([0-9.]+)", line))
            return {"P@10": float(f["P@10"]), "R@10": float(f["R@10"]), "NDCG@10": float(f["NDCG@10"]),
                    "MAP@10": float(f["MAP@10"]), "coverage": float(f["cov"]), "fit_s_median": float(f["fit"]),
                    "top10_all_users_s_median": float(f["top10"])}
    return None


ease = numpy_ease(os.path.join(out, "ease.txt"))
if ease is None:
    print("note: the numpy EASE peer did not run (see %s)" % os.path.join(out, "ease.log"))

for threads in ("1", "2"):
    vp = os.path.join(out, "veil-%s.jsonl" % threads)
    ip = os.path.join(out, "implicit-%s.json" % threads)
    if not (os.path.exists(vp) and os.path.exists(ip)):
        continue
    veil = veil_rows(vp)
    peer = {r["model"]: r for r in json.load(open(ip))["results"]}
    if ease is not None:
        peer["numpy EASE (2 threads)"] = ease
    print("\n### %s thread(s): medians of repeated runs, seconds\n" % threads)
    print("| model | P@10 | R@10 | NDCG@10 | MAP@10 | coverage | fit s | top-10 s |")
    print("|---|---|---|---|---|---|---|---|")
    for m, r in veil.items():
        print("| veil %s | %.4f | %.4f | %.4f | %.4f | %.3f | %.3f | %.3f |" % (
            m, r["precision"], r["recall"], r["ndcg"], r["map"], r["coverage"], r["train_s"], r["score_s"]))
    for name, r in peer.items():
        print("| %s | %.4f | %.4f | %.4f | %.4f | %.3f | %.3f | %.3f |" % (
            name if name.startswith("numpy") else "implicit " + name, r["P@10"], r["R@10"], r["NDCG@10"], r["MAP@10"], r["coverage"], r["fit_s_median"],
            r["top10_all_users_s_median"]))
    print("\n| pair | NDCG ratio (veil/peer) | fit time ratio (veil/peer) | top-10 time ratio (veil/peer) |")
    print("|---|---|---|---|")
    for v, p in PAIRS:
        if v in veil and p in peer:
            a, b = veil[v], peer[p]
            print("| %s vs %s | %.3f | %.2f | %.2f |" % (v, p, a["ndcg"] / b["NDCG@10"],
                  a["train_s"] / max(b["fit_s_median"], 1e-9), a["score_s"] / max(b["top10_all_users_s_median"], 1e-9)))
    if "hybrid" in veil:
        best_ndcg = max(r["NDCG@10"] for r in peer.values())
        best_p = max(r["P@10"] for r in peer.values())
        best_r = max(r["R@10"] for r in peer.values())
        h = veil["hybrid"]
        print("| hybrid vs best peer | NDCG %+.1f%%, P@10 %+.1f%%, R@10 %+.1f%% | | |" % (
            100 * (h["ndcg"] / best_ndcg - 1), 100 * (h["precision"] / best_p - 1), 100 * (h["recall"] / best_r - 1)))
