#!/usr/bin/env python3
"""infini-gram's engine half of `cargo bench -p shoulders-bench --bench attrib_scale`.

Run by that benchmark (not by hand) with the interpreter of a venv holding infini-gram 2.6.0
(see bench/infini_gram_crosscheck.py). Reads one JSON request on stdin:

    {"index_dir": DIR, "counts": [hex n-gram, ...], "texts": [hex normalised text, ...],
     "min_len": 32, "max_cnt": 1000}

opens infini-gram's u8 engine over DIR (our attribution index: the same tokenized.0 /
table.0 / offset.0 files), and measures, in this order:
  1. page cache dropped, engine opened, every count once        (count, cold)
  2. page cache dropped, every text's `attribute` once           (attribution, cold)
  3. every count again, every `attribute` again                  (warm)
and prints one JSON object: per-query times in ms, the counts, the spans found, the open time
and this process's memory (VmRSS, RssAnon, RssFile, VmHWM in KiB) after the warm pass.
"""

import json
import os
import sys
import time


def drop_caches():
    """Evict the page cache (root); returns how, or why not."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches"
    except OSError as e:
        return f"not evicted ({e.strerror})"


def memory():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def main():
    req = json.load(sys.stdin)
    from infini_gram.engine import InfiniGramEngine

    counts = [list(bytes.fromhex(q)) for q in req["counts"]]
    texts = [list(bytes.fromhex(t)) for t in req["texts"]]
    evicted = drop_caches()
    t0 = time.perf_counter()
    # u8 engine: the C++ class takes vocab_size as a u8 (so at most 255); the separator is
    # always 0xFF, eos_token_id only replaces it in returned ids.
    engine = InfiniGramEngine(index_dir=req["index_dir"], eos_token_id=0, vocab_size=255,
                              token_dtype="u8", version=4)
    open_s = time.perf_counter() - t0

    def count_pass():
        ms, got = [], []
        for q in counts:
            t = time.perf_counter()
            r = engine.count(input_ids=q)
            ms.append((time.perf_counter() - t) * 1e3)
            if "error" in r:
                raise SystemExit(f"engine error: {r['error']}")
            got.append(r["count"])
        return ms, got

    def attribute_pass():
        ms, spans = [], []
        for q in texts:
            t = time.perf_counter()
            r = engine.attribute(input_ids=q, delim_ids=[], min_len=req["min_len"],
                                 max_cnt=req["max_cnt"], enforce_bow=False)
            ms.append((time.perf_counter() - t) * 1e3)
            if "error" in r:
                raise SystemExit(f"engine error: {r['error']}")
            spans.append(len(r["spans"]))
        return ms, spans

    count_cold, got = count_pass()
    drop_caches()
    attr_cold, spans = attribute_pass()
    count_warm, got_warm = count_pass()
    attr_warm, _ = attribute_pass()
    if got_warm != got:
        raise SystemExit("engine counts differ between passes")
    json.dump({"open_s": open_s, "evicted": evicted, "counts": got, "spans": spans,
               "count_cold_ms": count_cold, "count_warm_ms": count_warm,
               "attr_cold_ms": attr_cold, "attr_warm_ms": attr_warm,
               "memory_kib": memory()}, sys.stdout)


if __name__ == "__main__":
    main()
