#!/usr/bin/env python3
"""The fair-pay attacks, end to end through a `shoulders` binary, on real text.

Each scenario builds a fresh ledger with the CLI only (init with an operator, ten honest
authors contributing the vendored corpus in crates/shoulders-attrib/tests/data/corpus, an
adversary "mallory", `index build`, `attribute`, a priced model, `settle`, `accounts`) and
prints the true author's share and the adversary's share. Run it with two binaries to compare
(e.g. the last release before a change and the current one):

    python3 bench/attacks.py --shoulders target/release/shoulders [--label after]
    python3 bench/attacks.py --shoulders /tmp/old/shoulders --label before

Shares are of attribution (ppm of an output, averaged over the outputs) unless the row says
"money" (share of the data pool paid by `settle`, from `accounts`). A row that cannot run on a
binary (a refused record, a failing index build) says what happened instead.

It is a measurement, not a test: the properties are proven by
crates/shoulders-attrib/tests/adversary.rs and the money tests.
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "crates/shoulders-attrib/tests/data/corpus"
PARAPHRASES = ROOT / "crates/shoulders-attrib/tests/data/paraphrase/cases.json"
ADV = "mallory"
PPM = 1_000_000


class Ledger:
    def __init__(self, bin_path, tmp):
        self.bin = bin_path
        self.tmp = Path(tmp)
        self.data = self.tmp / "ledger"
        self.keys = {}
        self.n = 0
        out = self.run("init", "--data-dir", self.data, "--operator", "op", "--protocol-fee-bps", "0")
        self.contributions = {}  # index -> author

    def run(self, *args, ok=True):
        p = subprocess.run([str(self.bin), *map(str, args)], capture_output=True, text=True)
        if ok and p.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, args[:3]))}: {p.stderr.strip()}")
        return p

    def json(self, *args):
        return json.loads(self.run(*args).stdout)

    def file(self, text, suffix=".txt"):
        self.n += 1
        f = self.tmp / f"f{self.n}{suffix}"
        f.write_bytes(text.encode() if isinstance(text, str) else text)
        return f

    def submit(self, who, kind, body, ok=True):
        return self.run("submit", "--data-dir", self.data, "--key", self.keys[who], "--kind", kind,
                        "--body", self.file(json.dumps(body), ".json"), ok=ok)

    def actor(self, who):
        key = self.tmp / f"{who}.key"
        self.run("key", "new", "--out", key)
        self.keys[who] = key
        self.submit(who, "actor.register", {"handle": who, "name": who, "payout_address": f"acct:{who}"})

    def contribute(self, who, text, dataset="owner/ds"):
        v = self.json("contribute", "--data-dir", self.data, "--key", self.keys[who], "--dataset", dataset,
                      self.file(text))
        self.contributions[v["index"]] = who
        return v["index"]

    def attribute(self, text, dataset="owner/ds"):
        return self.json("attribute", "--data-dir", self.data, "--dataset", dataset, "--text", self.file(text))


def corpus():
    docs = []
    for author in sorted(p for p in CORPUS.iterdir() if p.is_dir()):
        for f in sorted(author.iterdir()):
            docs.append((author.name, f.read_text()))
    return docs


def base_ledger(bin_path, tmp, extra_actors=()):
    lg = Ledger(bin_path, tmp)
    authors = sorted({a for a, _ in corpus()})
    for who in ["owner", *authors, ADV, "payer", *extra_actors]:
        lg.actor(who)
    lg.submit("owner", "dataset.create", {"dataset_id": "owner/ds", "name": "DS", "access": "open"})
    for author, text in corpus():
        lg.contribute(author, text)
    return lg


def contributor_shares(report):
    """Contributor -> ppm from an `attribute` report (old and new formats)."""
    return {k: int(v) for k, v in (report.get("shares", {}).get("contributors_ppm") or {}).items()}


def contribution_ppm(report):
    s = report.get("shares", {})
    if "contributions_ppm" in s:
        return {int(k): int(v) for k, v in s["contributions_ppm"].items()}
    if s.get("rule") == "spans":  # before: cluster representatives
        return {int(k): int(v) for k, v in (s.get("clusters_ppm") or {}).items()}
    return {}


def mean_shares(lg, outputs, true_author, adversary):
    t = a = 0
    for out in outputs:
        sh = contributor_shares(lg.attribute(out))
        t += sh.get(true_author, 0)
        a += sh.get(adversary, 0)
    n = max(len(outputs), 1)
    return t / n / 1e4, a / n / 1e4


def passages(text, n, rng, length=(200, 500)):
    out = []
    for _ in range(n):
        ln = rng.randint(*length)
        at = rng.randint(0, max(len(text) - ln, 0))
        out.append(text[at:at + ln])
    return out


def money(lg, outputs, true_author, adversary, with_attribution=True):
    """Settle one receipt per output on a priced model whose data pool is 50%; the data pool's
    split between the true author and the adversary, from `accounts`."""
    terms = {"commercial_use": True, "derivatives": "allowed", "attribution_required": True,
             "share_alike": False, "royalty_bps": 0, "data_share_bps": 5000, "currency": "USD",
             "price_per_call_micros": "1000000", "price_per_1k_output_tokens_micros": "0",
             "registration_fee_micros": "0"}
    lg.submit("owner", "license.define", {"license_id": "owner/l", "name": "L", "terms": terms})
    lg.submit("owner", "model.register", {"model_id": "owner/m", "name": "M", "datasets": ["owner/ds"],
                                          "license_id": "owner/l"})
    lg.run("deposit", "--data-dir", lg.data, "--account", "payer", "--amount-micros", str(10**12), "--currency", "USD")
    lines = []
    for i, out in enumerate(outputs):
        attribution = []
        if with_attribution:
            for c, ppm in contribution_ppm(lg.attribute(out)).items():
                if ppm:
                    attribution.append({"dataset_id": "owner/ds", "contribution": c, "ppm": ppm})
        body = {"usage_id": f"u{i}", "model_id": "owner/m", "payer": "payer", "use_category": "chat",
                "input_tokens": 1, "output_tokens": len(out), "output_hash": "sha256:" + "0" * 64}
        if attribution:
            body["attribution"] = attribution
        lines.append(json.dumps({"ts_ms": 1_800_000_000_000 + i, "body": body}))
    lg.run("settle", "--data-dir", lg.data, lg.file("\n".join(lines) + "\n", ".jsonl"))
    acc = lg.json("accounts", "--data-dir", lg.data)
    bal = {a["account"]: int(a["balance_micros"]) for a in acc["accounts"]}
    pool = len(outputs) * 500_000
    # The owner's own half is not part of the pool.
    bal["owner"] = bal.get("owner", 0) - pool
    return 100 * bal.get(true_author, 0) / pool, 100 * bal.get(adversary, 0) / pool


# ---- scenarios -------------------------------------------------------------------------------

def source_doc(rng):
    docs = [(a, t) for a, t in corpus() if a.startswith(("04", "05", "07", "10"))]
    return docs[rng.randrange(len(docs))]


def s_exact_copy(b, tmp, rng):
    author, text = source_doc(rng)
    lg = base_ledger(b, tmp)
    lg.contribute(ADV, text)
    lg.run("index", "build", "--data-dir", lg.data, "owner/ds")
    return mean_shares(lg, passages(text, 10, rng), author, ADV), author


def edits(text, kind):
    if kind == "crlf":
        return text.replace("\n", "\r\n")
    if kind == "rewrap":
        words, lines, line = text.split(), [], ""
        for w in words:
            if len(line) + len(w) + 1 > 60:
                lines.append(line)
                line = w
            else:
                line = (line + " " + w).strip()
        return "\n".join(lines + [line])
    if kind == "case":
        return text.upper()
    raise ValueError(kind)


def s_edited_copy(kind):
    def run(b, tmp, rng):
        author, text = source_doc(rng)
        lg = base_ledger(b, tmp)
        copy = edits(text, kind)
        lg.contribute(ADV, copy)
        lg.run("index", "build", "--data-dir", lg.data, "owner/ds")
        # Outputs quote the copy's version (the copier's bytes).
        return mean_shares(lg, passages(copy, 10, rng), author, ADV), author
    return run


def s_chunked(b, tmp, rng):
    author, text = source_doc(rng)
    lg = base_ledger(b, tmp)
    q = len(text) // 4
    for i in range(4):
        lg.contribute(ADV, text[i * q:(i + 1) * q if i < 3 else len(text)])
    lg.run("index", "build", "--data-dir", lg.data, "owner/ds")
    return mean_shares(lg, passages(text, 10, rng), author, ADV), author


def shuffled_words(n_bytes, rng):
    words = [w for _, t in corpus() for w in t.split()]
    out, size = [], 0
    while size < n_bytes:
        w = rng.choice(words)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def s_volume_attribution(b, tmp, rng):
    lg = base_ledger(b, tmp)
    # Ten times any honest author's volume (each contributed about a tenth of the corpus).
    total = sum(len(t) for _, t in corpus())
    for _ in range(10):
        lg.contribute(ADV, shuffled_words(total // 10, rng))
    lg.run("index", "build", "--data-dir", lg.data, "owner/ds")
    # Outputs with no authored text: corpus words in a new order (chance matches only).
    outs = [shuffled_words(400, rng) for _ in range(10)]
    _, adv = mean_shares(lg, outs, "nobody", ADV)
    return (float("nan"), adv), "-"


def s_volume_money(b, tmp, rng):
    lg = base_ledger(b, tmp)
    # Ten times any honest author's volume (each contributed about a tenth of the corpus).
    total = sum(len(t) for _, t in corpus())
    for _ in range(10):
        lg.contribute(ADV, shuffled_words(total // 10, rng))
    lg.run("index", "build", "--data-dir", lg.data, "owner/ds")
    outs = [shuffled_words(400, rng) for _ in range(10)]
    owner, adv = money(lg, outs, "owner", ADV)
    return (owner, adv), "owner (model)"


def s_declared_size(b, tmp, rng):
    lg = base_ledger(b, tmp)
    fake = "sha256:" + "ab" * 32
    p = lg.submit(ADV, "data.contribute", {"dataset_id": "owner/ds", "content_hash": fake,
                                           "byte_size": 2**40, "token_count": 2**40}, ok=False)
    if p.returncode != 0:
        code = re.search(r"error\[(\w+)\]", p.stderr)
        return ("refused", code.group(1) if code else p.stderr.strip()[:40]), "-"
    b2 = lg.run("index", "build", "--data-dir", lg.data, "owner/ds", ok=False)
    if b2.returncode != 0:
        code = re.search(r"error\[(\w+)\]", b2.stderr)
        # The money fallback: receipts without attribution.
        owner, adv = money(lg, ["no evidence"] * 5, "owner", ADV, with_attribution=False)
        return (f"index build fails ({code.group(1) if code else '?'})", f"{adv:.4f}% of the pool"), "-"
    owner, adv = money(lg, ["no evidence"] * 5, "owner", ADV, with_attribution=False)
    return (owner, adv), "-"


BOILER = ("Permission is hereby granted, free of charge, to any person obtaining a copy of this "
          "software and associated documentation files, to deal in the Software without restriction, "
          "including without limitation the rights to use, copy, modify, merge and publish it.")


def s_boilerplate(b, tmp, rng):
    # Nine independent documents (real ones, by nine authors) each end with the same licence
    # paragraph; the adversary's document, contributed last, runs a few bytes past it.
    docs = corpus()
    lg = Ledger(b, tmp)
    for who in ["owner", *[f"author{i}" for i in range(9)], ADV, "payer"]:
        lg.actor(who)
    lg.submit("owner", "dataset.create", {"dataset_id": "owner/ds", "name": "DS", "access": "open"})
    for i in range(9):
        _, text = docs[i * 4]
        lg.contribute(f"author{i}", f"{text}\n\n{BOILER}\n")
    lg.contribute(ADV, f"{docs[37][1]}\n\n{BOILER} Also")
    lg.run("index", "build", "--data-dir", lg.data, "owner/ds")
    outs = [f"{BOILER} Also{x}" for x in [" in short.", ", note this.", " sure."]]
    first, adv = mean_shares(lg, outs, "author0", ADV)
    return (first, adv), "author0 (first to contribute it)"


def s_near_duplicate(b, tmp, rng):
    author, text = source_doc(rng)
    lg = base_ledger(b, tmp, extra_actors=("later",))
    line = "\nThis line was written by the later author and it appears in no other document anywhere.\n"
    mid = len(text) // 2
    lg.contribute("later", text[:mid] + line + text[mid:])
    lg.run("index", "build", "--data-dir", lg.data, "owner/ds")
    # The true author of the line is "later"; the earlier author is the one wrongly credited.
    t, a = mean_shares(lg, [line.strip()], "later", author)
    return (t, a), "later (its unique line)"


def s_drift(b, tmp, rng):
    author, text = source_doc(rng)
    lg = base_ledger(b, tmp)
    lg.run("index", "build", "--data-dir", lg.data, "owner/ds")
    outs = [" ".join(p.split()) for p in passages(text, 10, rng)]
    return mean_shares(lg, outs, author, ADV), author


def s_paraphrase(b, tmp, rng):
    # The paraphrase evaluation set: 17 real texts, each contributed by its own author (named
    # after the file), 54 paraphrases written for the project; the adversary contributes an
    # upper-cased copy of every text cut in three.
    root = PARAPHRASES.parent
    cases = json.loads(PARAPHRASES.read_text())["positives"]
    files = sorted((root / "corpus").glob("*.txt"))
    lg = Ledger(b, tmp)
    names = {f.name: f"p{i}" for i, f in enumerate(files)}
    for who in ["owner", *names.values(), ADV]:
        lg.actor(who)
    lg.submit("owner", "dataset.create", {"dataset_id": "owner/ds", "name": "DS", "access": "open"})
    for f in files:
        lg.contribute(names[f.name], f.read_text())
    for f in files:
        t = f.read_text().upper()
        q = len(t) // 3
        for i in range(3):
            lg.contribute(ADV, t[i * q:(i + 1) * q if i < 2 else len(t)])
    lg.run("index", "build", "--data-dir", lg.data, "owner/ds")
    got = adv = 0
    for c in cases:
        sh = contributor_shares(lg.attribute(c["text"]))
        got += sh.get(names[c["source"]], 0)
        adv += sh.get(ADV, 0)
    n = len(cases)
    return (got / n / 1e4, adv / n / 1e4), f"{n} paraphrases"


def s_free_derivative(b, tmp, rng):
    lg = Ledger(b, tmp)
    for who in ["base", "tuner", "payer"]:
        lg.actor(who)

    def terms(price, royalty, floor=None):
        t = {"commercial_use": True, "derivatives": "allowed", "attribution_required": True,
             "share_alike": False, "royalty_bps": royalty, "data_share_bps": 0, "currency": "USD",
             "price_per_call_micros": str(price), "price_per_1k_output_tokens_micros": "0",
             "registration_fee_micros": "0"}
        if floor is not None:
            t["royalty_floor_per_call_micros"] = str(floor)
        return t

    # The base asks 5% and, where the binary knows floors, at least 50,000 per call downstream.
    p = lg.submit("base", "license.define", {"license_id": "base/l", "name": "L",
                                             "terms": terms(1_000_000, 500, 50_000)}, ok=False)
    if p.returncode != 0:
        lg.submit("base", "license.define", {"license_id": "base/l", "name": "L", "terms": terms(1_000_000, 500)})
    lg.submit("base", "model.register", {"model_id": "base/m", "name": "Base", "license_id": "base/l"})
    lg.submit("tuner", "license.define", {"license_id": "tuner/free", "name": "Free", "terms": terms(0, 0)})
    p = lg.submit("tuner", "model.register", {"model_id": "tuner/adapter", "name": "Adapter", "license_id": "tuner/free",
                                              "parents": [{"model_id": "base/m", "relation": "adapter"}]}, ok=False)
    refused = None
    if p.returncode != 0:
        code = re.search(r"error\[(\w+)\]", p.stderr)
        refused = code.group(1) if code else "refused"
        # Without a licence of its own the adapter is charged the floors.
        lg.submit("tuner", "model.register", {"model_id": "tuner/adapter2", "name": "Adapter",
                                              "parents": [{"model_id": "base/m", "relation": "adapter"}]})
        model = "tuner/adapter2"
    else:
        model = "tuner/adapter"
    lg.run("deposit", "--data-dir", lg.data, "--account", "payer", "--amount-micros", str(10**10), "--currency", "USD")
    lines = [json.dumps({"ts_ms": 1_800_000_000_000 + i, "body": {
        "usage_id": f"u{i}", "model_id": model, "payer": "payer", "use_category": "chat",
        "input_tokens": 1, "output_tokens": 100, "output_hash": "sha256:" + "0" * 64}}) for i in range(10)]
    out = lg.run("settle", "--data-dir", lg.data, lg.file("\n".join(lines) + "\n", ".jsonl"), ok=False)
    acc = lg.json("accounts", "--data-dir", lg.data)
    bal = {a["account"]: int(a["balance_micros"]) for a in acc["accounts"]}
    per_call = bal.get("base", 0) / 10
    note = f"free adapter refused ({refused}); unlicensed adapter" if refused else "free adapter"
    return (f"{per_call:,.0f} micro-units per call to the base owner", note), "base owner"


SCENARIOS = [
    ("exact copy (author's passages)", s_exact_copy),
    ("edited copy: CRLF (outputs quote the copy)", s_edited_copy("crlf")),
    ("edited copy: re-wrapped lines", s_edited_copy("rewrap")),
    ("edited copy: upper case", s_edited_copy("case")),
    ("chunked copy (4 pieces)", s_chunked),
    ("volume: 10x shuffled words, chance-match outputs", s_volume_attribution),
    ("volume: money of no-evidence receipts (data pool)", s_volume_money),
    ("declared size 2^40 for unstored content", s_declared_size),
    ("boilerplate in 9 docs, adversary's match runs further", s_boilerplate),
    ("near-duplicate with a later author's unique line", s_near_duplicate),
    ("drift: whitespace collapsed in the output", s_drift),
    ("paraphrase (true author's share)", s_paraphrase),
    ("free derivative of a 5%-royalty model", s_free_derivative),
]


def fmt(x):
    if isinstance(x, float):
        return "n/a" if x != x else f"{x:.1f}%"
    return str(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shoulders", required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--only", default="")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless every attack earns the adversary nothing and the true author keeps its share "
                         "(what the current rules promise; CI runs it)")
    args = ap.parse_args()
    failures = []
    rng = random.Random(args.seed)
    print(f"| attack {args.label} | true author | true author's share | adversary's share |")
    print("|---|---|---|---|")
    for name, fn in SCENARIOS:
        if args.only and args.only not in name:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                (t, a), who = fn(Path(args.shoulders).resolve(), tmp, random.Random(rng.random()))
                print(f"| {name} | {who} | {fmt(t)} | {fmt(a)} |", flush=True)
                failures.extend(f"{name}: {p}" for p in broken_promises(name, t, a))
            except Exception as e:  # a scenario the binary cannot run
                print(f"| {name} | - | error: {str(e)[:80]} | - |", flush=True)
                failures.append(f"{name}: {e}")
    if args.check:
        for f in failures:
            print("FAILED:", f, file=sys.stderr)
        return 1 if failures else 0
    return 0


def broken_promises(name, true_share, adversary):
    """What the fair-pay rules promise for each row (checked with --check)."""
    out = []
    if isinstance(adversary, float) and adversary == adversary and adversary > 0:
        out.append(f"the adversary earned {adversary:.2f}%")
    if name.startswith("declared size") and true_share != "refused":
        out.append(f"a contribution without content was not refused ({true_share})")
    if name.startswith("free derivative") and str(true_share).startswith("0 "):
        out.append("the base owner earned nothing from its free derivative")
    floors = {"exact copy": 99.0, "edited copy: CRLF": 99.0, "edited copy: re-wrapped": 99.0,
              "edited copy: upper case": 90.0, "chunked copy": 99.0, "boilerplate": 99.0,
              "near-duplicate": 99.0, "drift": 90.0, "paraphrase": 90.0}
    for prefix, floor in floors.items():
        if name.startswith(prefix) and isinstance(true_share, float) and true_share < floor:
            out.append(f"the true author kept {true_share:.1f}% (< {floor}%)")
    return out


if __name__ == "__main__":
    sys.exit(main())
