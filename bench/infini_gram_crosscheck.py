#!/usr/bin/env python3
"""Cross-check a shoulders attribution index against infini-gram (u8 / byte mode).

The script needs only the Python standard library. infini-gram itself (and the
numpy its indexer imports) only has to be importable by the interpreter given
with --ig-python (default: the one running this script):

    python3.11 -m venv /tmp/igvenv
    /tmp/igvenv/bin/pip install infini-gram==2.6.0 numpy
    # infini-gram 2.6.0's indexer does `import transformers` even without a
    # tokenizer; when transformers is missing this script puts a 3-line stub on
    # the indexer's PYTHONPATH instead (or: pip install transformers).

What it does:
  1. takes a corpus: --docs DIR (one UTF-8 file per document, read recursively,
     sorted by relative path) or --generate N_BYTES (synthetic order-3
     character Markov text trained on /usr/share/common-licenses, written as
     one file per document under WORKDIR/docs);
  2. writes it as WORKDIR/jsonl/corpus.jsonl ({"text": ...} per line) and runs
     `python -m infini_gram.indexing --token_dtype u8` (no tokenizer) into
     WORKDIR/ig-index, reporting wall time and peak RSS;
  3. our index: --ours DIR (an index already built) or --ours-cmd TEMPLATE (a
     shell command run under the same timing; {docs}, {jsonl} and {out} are
     replaced by the docs directory, the jsonl file and WORKDIR/ours-index).
     With neither, the reader is pointed at infini-gram's own index, which
     validates this script's reader against infini-gram's engine;
  4. draws --queries byte n-grams (lengths 1..20; most sampled from the corpus,
     some at document/corpus edges, some random) and compares
       * infini-gram's engine count() on infini-gram's index   (reference)
       * this script's reader on our index files                (always)
       * infini-gram's engine count() on our index files        (when it loads)
       * a naive overlapping count over the raw corpus          (small corpora)
     and prints "N passed, M failed"; the exit status is 1 on any mismatch or
     failed structural check.

The reader reads the infini-gram layout directly: tokenized.0 (the bytes; each
document preceded by one 0xFF byte), table.0 (suffix array: one little-endian
pointer of W bytes per position, W = size(table.0) / number of entries) and
offset.0 (u64 LE start offset of each document, pointing at its 0xFF).
A pointer width given in shoulders-index.json (keys tried: ptr_width,
pointer_width, ptr_size, pointer_bytes, sa_ptr_width) is used when present.

Examples:
    /tmp/igvenv/bin/python bench/infini_gram_crosscheck.py --generate 1000000
    /tmp/igvenv/bin/python bench/infini_gram_crosscheck.py --docs corpus/ \
        --ours-cmd 'target/release/shoulders index build {docs} --out {out}'
    /tmp/igvenv/bin/python bench/infini_gram_crosscheck.py --docs corpus/ --ours idx/
"""

import argparse
import bisect
import json
import math
import mmap
import os
import random
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEP = 0xFF
MAX_QUERY_LEN = 20
# infini-gram's engine classifies every entry of an index directory by whether
# its *full path* contains one of these words, so none may appear in the
# directory's own path, and no stray file may carry one in its name.
IG_NAME_WORDS = ("tokenized", "table", "offset", "metadata", "metaoff", "unigram")
HACK = 100000  # infini-gram's make-part overlap; smaller corpora need --cpus 1


# --------------------------------------------------------------------------
# corpus


TRAIN_SOURCES = ["/usr/share/dict/words"] + sorted(
    str(p) for p in Path("/usr/share/common-licenses").glob("*") if p.is_file()
)

# Mixed into the training text so the corpus has multi-byte UTF-8 sequences.
MULTILINGUAL = (
    "Ünïcödé façade naïve café résumé Straße Ærøskøbing jalapeño piñata. "
    "Ελληνικά κείμενα και λέξεις. Русский текст и слова. "
    "日本語の文章と言葉。中文文本和词语。한국어 문장. "
    "emoji 🙂 and math ∑ ∞ ≤ ≥ → ← — “quotes” ‘single’ … "
)


def train_text():
    parts = []
    for src in TRAIN_SOURCES:
        try:
            parts.append(Path(src).read_text(encoding="utf-8", errors="ignore"))
        except OSError:
            pass
    text = "\n".join(parts)
    if len(text) < 10000:  # no Debian texts: fall back to generated words
        rng = random.Random(1)
        words = ["".join(rng.choice("etaoinshrdlucmfwypvbgkjqxz") for _ in range(rng.randint(1, 9)))
                 for _ in range(3000)]
        text = " ".join(rng.choice(words) for _ in range(60000))
    # a few copies of the multilingual line, spread through the text
    chunks = [text[i:i + 20000] for i in range(0, len(text), 20000)]
    return (" " + MULTILINGUAL + "\n").join(chunks)


class Markov:
    def __init__(self, text, order=3):
        self.order = order
        table = {}
        for i in range(len(text) - order):
            ctx = text[i:i + order]
            table.setdefault(ctx, {}).setdefault(text[i + order], 0)
            table[ctx][text[i + order]] += 1
        self.model = {}
        for ctx, nxt in table.items():
            chars = list(nxt)
            cum, total = [], 0
            for c in chars:
                total += nxt[c]
                cum.append(total)
            self.model[ctx] = (chars, cum, total)
        self.starts = list(self.model)

    def generate(self, rng, n_chars):
        ctx = rng.choice(self.starts)
        out = [ctx]
        model, rnd, bis = self.model, rng.random, bisect.bisect_right
        for _ in range(n_chars):
            entry = model.get(ctx)
            if entry is None:
                ctx = rng.choice(self.starts)
                out.append(ctx)
                continue
            chars, cum, total = entry
            c = chars[bis(cum, rnd() * total)] if len(chars) > 1 else chars[0]
            out.append(c)
            ctx = ctx[1:] + c
        return "".join(out)


def generate_corpus(n_bytes, docs_dir, seed):
    rng = random.Random(seed)
    t0 = time.time()
    model = Markov(train_text())
    docs_dir.mkdir(parents=True, exist_ok=True)
    total, i = 0, 0
    while total < n_bytes:
        # document lengths: roughly log-uniform between 20 and 20,000 chars,
        # with a few empty and one-character documents
        r = rng.random()
        if r < 0.01:
            n = 0
        elif r < 0.02:
            n = 1
        else:
            n = int(math.exp(rng.uniform(math.log(20), math.log(20000))))
        text = model.generate(rng, n)[:n] if n else ""
        data = text.encode("utf-8")
        (docs_dir / f"doc-{i:07d}.txt").write_bytes(data)
        total += len(data)
        i += 1
    print(f"generated {i} documents, {total} bytes in {time.time() - t0:.1f}s -> {docs_dir}")


def load_docs(docs_dir):
    paths = sorted(p for p in Path(docs_dir).rglob("*") if p.is_file())
    docs = []
    for p in paths:
        data = p.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            sys.exit(f"error: {p} is not valid UTF-8 ({e}); infini-gram's indexer reads JSON text")
        docs.append((str(p.relative_to(docs_dir)), data))
    if not docs:
        sys.exit(f"error: no documents under {docs_dir}")
    return docs


def write_jsonl(docs, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii") as f:
        for _, data in docs:
            # ensure_ascii (the default) escapes \r, U+2028 etc., so that the
            # indexer's readlines() sees exactly one line per document
            f.write(json.dumps({"text": data.decode("utf-8")}) + "\n")


# --------------------------------------------------------------------------
# running and timing


def run_timed(cmd, log_path, env=None, shell=False, cwd=None):
    """Run cmd, return (rc, wall_s, peak_rss_kib or None, rss_source)."""
    time_bin = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    stats_path = str(log_path) + ".time"
    if shell:
        full = ["/bin/sh", "-c", cmd]
    else:
        full = list(cmd)
    if time_bin:
        full = [time_bin, "-v", "-o", stats_path] + full
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        rc = subprocess.call(full, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    peak, source = None, None
    if time_bin and os.path.exists(stats_path):
        for line in Path(stats_path).read_text().splitlines():
            if "Maximum resident set size" in line:
                peak, source = int(line.rsplit(":", 1)[1]), "/usr/bin/time -v"
            if "Command exited with non-zero status" in line:
                rc = int(line.rsplit(" ", 1)[1])
    if peak is None:
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        peak = after
        source = "getrusage(RUSAGE_CHILDREN)" + (" (upper bound: max over all children so far)" if before else "")
    return rc, wall, peak, source


def ig_python_has(ig_python, module):
    code = f"import importlib.util,sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
    return subprocess.call([ig_python, "-c", code]) == 0


def build_infinigram(args, jsonl_dir, save_dir, ds_size, work):
    for word in IG_NAME_WORDS:
        if word in str(save_dir):
            sys.exit(f"error: infini-gram's engine would misread {save_dir}: its path contains {word!r}")
    if not ig_python_has(args.ig_python, "infini_gram"):
        sys.exit(f"error: {args.ig_python} cannot import infini_gram (pip install infini-gram==2.6.0 numpy)")
    if not ig_python_has(args.ig_python, "numpy"):
        sys.exit(f"error: {args.ig_python} lacks numpy, which infini_gram.indexing imports (pip install numpy)")
    env = dict(os.environ)
    if not ig_python_has(args.ig_python, "transformers"):
        stub = work / "stub-transformers" / "transformers"
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "__init__.py").write_text(
            "# stub: infini_gram.indexing imports transformers even when no tokenizer is used\n"
            "from types import SimpleNamespace\n"
            "utils = SimpleNamespace(logging=SimpleNamespace(set_verbosity=lambda level: None))\n"
        )
        env["PYTHONPATH"] = str(stub.parent) + os.pathsep + env.get("PYTHONPATH", "")
        print("note: transformers not installed for the indexer; using a stub module")
    cpus = args.ig_cpus or os.cpu_count() or 1
    if cpus > 1 and ds_size < cpus + HACK:
        # infini-gram 2.6.0 then writes a corrupt table.0 and fails in concat
        print(f"note: corpus of {ds_size} bytes < cpus + {HACK}: running infini-gram with --cpus 1")
        cpus = 1
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    ulimit = min(1048576, hard) if hard != resource.RLIM_INFINITY else 1048576
    temp_dir = work / "ig-temp"
    cmd = [args.ig_python, "-m", "infini_gram.indexing",
           "--data_dir", str(jsonl_dir.resolve()),
           "--save_dir", str(save_dir.resolve()),
           "--temp_dir", str(temp_dir.resolve()),
           "--token_dtype", "u8", "--version", "4",
           "--cpus", str(cpus), "--mem", str(args.ig_mem), "--ulimit", str(ulimit)]
    print("infini-gram:", " ".join(shlex.quote(c) for c in cmd))
    rc, wall, peak, src = run_timed(cmd, work / "ig-index.log", env=env)
    if rc != 0:
        print((work / "ig-index.log").read_text(errors="replace")[-3000:])
        sys.exit(f"error: infini-gram indexing failed (rc={rc}); log: {work / 'ig-index.log'}")
    shutil.rmtree(temp_dir, ignore_errors=True)
    print(f"infini-gram index: {wall:.2f}s wall, peak RSS {fmt_kib(peak)} ({src}), cpus={cpus}")
    return wall, peak


def fmt_kib(kib):
    return "?" if kib is None else f"{kib / 1024:.1f} MiB"


# --------------------------------------------------------------------------
# reader for the on-disk layout


PTR_WIDTH_KEYS = ("ptr_width", "pointer_width", "ptr_size", "pointer_bytes", "sa_ptr_width")


def find_key(obj, keys):
    if isinstance(obj, dict):
        for k in keys:
            if k in obj and isinstance(obj[k], int):
                return obj[k]
        for v in obj.values():
            r = find_key(v, keys)
            if r is not None:
                return r
    return None


class Index:
    def __init__(self, index_dir):
        self.dir = Path(index_dir)
        self.meta = None
        meta_path = self.dir / "shoulders-index.json"
        if meta_path.exists():
            self.meta = json.loads(meta_path.read_text())
        self._files = []
        self.ds = self._map("tokenized.0")
        self.sa = self._map("table.0")
        self.od = self._map("offset.0") if (self.dir / "offset.0").exists() else None
        self.ds_size = len(self.ds)
        sa_size = len(self.sa)
        width = find_key(self.meta, PTR_WIDTH_KEYS) if self.meta else None
        self.width_source = "shoulders-index.json" if width else "size(table.0) / size(tokenized.0)"
        if not width:
            if self.ds_size == 0 or sa_size % self.ds_size:
                raise ValueError(f"{index_dir}: size(table.0)={sa_size} is not a multiple of "
                                 f"size(tokenized.0)={self.ds_size} and shoulders-index.json gives no pointer width")
            width = sa_size // self.ds_size
        if not 1 <= width <= 8 or sa_size % width:
            raise ValueError(f"{index_dir}: bad pointer width {width} for table.0 of {sa_size} bytes")
        self.width = width
        self.n = sa_size // width

    def _map(self, name):
        f = open(self.dir / name, "rb")
        self._files.append(f)
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def ptr(self, rank):
        w = self.width
        return int.from_bytes(self.sa[rank * w:(rank + 1) * w], "little")

    def count(self, q):
        """Occurrences of q: the suffixes whose first len(q) bytes equal q.
        Same comparison as infini-gram's engine: ds[p : min(p+len(q), size)]
        compared lexicographically with q (a shorter tail compares less)."""
        if not q:
            return self.n
        ds, n, k = self.ds, self.n, len(q)
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) // 2
            p = self.ptr(mid)
            if ds[p:p + k] < q:
                lo = mid + 1
            else:
                hi = mid
        first = lo
        hi = n
        while lo < hi:
            mid = (lo + hi) // 2
            p = self.ptr(mid)
            if ds[p:p + k] <= q:
                lo = mid + 1
            else:
                hi = mid
        return lo - first

    def suffix_le(self, a, b):
        """ds[a:] <= ds[b:] without copying whole suffixes."""
        ds, size, k = self.ds, self.ds_size, 64
        while True:
            x, y = ds[a:a + k], ds[b:b + k]
            if x != y or (a + k >= size and b + k >= size):
                return x <= y
            if a + k >= size or b + k >= size:
                return x <= y if len(x) != len(y) else True
            k *= 4

    def structure(self, n_docs, full_limit, rng):
        """Structural checks. Returns a list of (ok, description)."""
        checks = []
        seps = sum(self.ds[i:i + (64 << 20)].count(bytes([SEP])) for i in range(0, self.ds_size, 64 << 20))
        if self.n == self.ds_size:
            checks.append((True, f"suffix array has one entry per byte ({self.n}), separator positions included"))
        elif self.n == self.ds_size - seps:
            checks.append((True, f"suffix array has {self.n} entries = bytes - separators (separator positions excluded; "
                                 f"infini-gram includes them)"))
        else:
            checks.append((False, f"suffix array has {self.n} entries; tokenized.0 has {self.ds_size} bytes, {seps} of them 0xFF"))
        ig_width = max(1, math.ceil(math.log2(self.ds_size) / 8)) if self.ds_size > 1 else 1
        checks.append((True, f"pointer width {self.width} bytes (from {self.width_source}); "
                             f"infini-gram's rule ceil(log2({self.ds_size})/8) gives {ig_width}"))
        # pointers in range, distinct
        full = self.ds_size <= full_limit
        if full:
            seen = bytearray(self.ds_size)
            bad = dup = 0
            for r in range(self.n):
                p = self.ptr(r)
                if p >= self.ds_size:
                    bad += 1
                elif seen[p]:
                    dup += 1
                else:
                    seen[p] = 1
            checks.append((bad == 0 and dup == 0, f"all {self.n} pointers < {self.ds_size} and distinct "
                                                  f"({bad} out of range, {dup} duplicates)"))
            ranks = range(self.n - 1)
        else:
            m = min(200000, max(0, self.n - 1))
            bad = sum(1 for r in rng.sample(range(self.n), min(m, self.n)) if self.ptr(r) >= self.ds_size)
            checks.append((bad == 0, f"{min(m, self.n)} sampled pointers < {self.ds_size} ({bad} out of range)"))
            ranks = rng.sample(range(self.n - 1), m) if self.n > 1 else []
        unsorted = 0
        for r in ranks:
            a, b = self.ptr(r), self.ptr(r + 1)
            if a < self.ds_size and b < self.ds_size and not self.suffix_le(a, b):
                unsorted += 1
        checks.append((unsorted == 0, f"{'all' if full else 'sampled'} {len(ranks)} adjacent suffix pairs in order "
                                      f"({unsorted} out of order)"))
        # documents
        if self.od is not None:
            osz = len(self.od)
            ok = osz % 8 == 0
            offs = [int.from_bytes(self.od[i:i + 8], "little") for i in range(0, osz - osz % 8, 8)]
            inc = all(x < y for x, y in zip(offs, offs[1:]))
            at_sep = all(o < self.ds_size and self.ds[o] == SEP for o in offs)
            first0 = not offs or offs[0] == 0
            checks.append((ok and len(offs) == n_docs, f"offset.0 holds {len(offs)} u64 offsets, corpus has {n_docs} documents"))
            checks.append((inc and at_sep and first0, "offsets strictly increasing, first is 0, each points at a 0xFF byte"
                           if inc and at_sep and first0 else
                           f"offsets: increasing={inc} first_is_0={first0} all_at_0xFF={at_sep}"))
            checks.append((seps == n_docs, f"tokenized.0 has {seps} 0xFF separators for {n_docs} documents"))
        else:
            checks.append((False, "offset.0 missing"))
        return checks

    def close(self):
        for m in (self.ds, self.sa, self.od):
            if isinstance(m, mmap.mmap):
                m.close()
        for f in self._files:
            f.close()


# --------------------------------------------------------------------------
# infini-gram engine (run in a subprocess: a failed C++ assert aborts)


def engine_worker():
    req = json.load(sys.stdin)
    from infini_gram.engine import InfiniGramEngine
    # u8 engine: the C++ class takes vocab_size as a u8 (so at most 255) and
    # Python asserts eos_token_id < vocab_size; the separator id is always
    # 0xFF; eos_token_id only replaces 0xFF in returned token ids.
    t0 = time.perf_counter()
    engine = InfiniGramEngine(index_dir=req["index_dir"], eos_token_id=0, vocab_size=255,
                              token_dtype="u8", version=4)
    t1 = time.perf_counter()
    counts = []
    for qhex in req["queries"]:
        r = engine.count(input_ids=list(bytes.fromhex(qhex)))
        if "error" in r:
            raise SystemExit(f"engine error: {r['error']}")
        counts.append(r["count"])
    t2 = time.perf_counter()
    json.dump({"counts": counts, "open_s": t1 - t0, "count_s": t2 - t1}, sys.stdout)


def engine_counts(ig_python, index_dir, queries):
    for word in IG_NAME_WORDS:
        if word in str(Path(index_dir).resolve()):
            return None, f"path contains {word!r}, which infini-gram's engine would misread"
    req = json.dumps({"index_dir": str(Path(index_dir).resolve()), "queries": [q.hex() for q in queries]})
    p = subprocess.run([ig_python, os.path.abspath(__file__), "--engine-worker"], input=req,
                       capture_output=True, text=True)
    if p.returncode != 0:
        return None, f"engine failed (rc={p.returncode}): {p.stderr.strip()[-500:]}"
    out = json.loads(p.stdout)
    return out, None


# --------------------------------------------------------------------------
# queries


def sample_queries(docs, n, rng, sep_queries=0):
    blobs = [d for _, d in docs]
    nonempty = [b for b in blobs if b]
    cum, total = [], 0
    for b in blobs:
        total += len(b)
        cum.append(total)
    alphabet = sorted(set(b"".join(rng.sample(nonempty, min(len(nonempty), 200)))) - {SEP}) or list(range(97, 123))
    out, seen = [], set()

    def add(q, kind):
        if q and q not in seen:
            seen.add(q)
            out.append((q, kind))

    # edges: start of the first document, end of the corpus, document starts/ends
    if nonempty:
        for L in (1, 5, MAX_QUERY_LEN):
            add(nonempty[0][:L], "edge")
            add(nonempty[-1][-L:], "edge")
        for _ in range(min(20, n // 50)):
            b = rng.choice(nonempty)
            L = rng.randint(1, MAX_QUERY_LEN)
            add(b[:L], "edge")
            add(b[-L:], "edge")
        short = [b for b in nonempty if len(b) <= MAX_QUERY_LEN]
        for b in rng.sample(short, min(5, len(short))):
            add(b, "edge")
    for _ in range(sep_queries):  # spanning a document boundary (contain 0xFF)
        i = rng.randrange(1, len(blobs)) if len(blobs) > 1 else 0
        add(blobs[i - 1][-rng.randint(0, 5):] + bytes([SEP]) + blobs[i][:rng.randint(0, 5)], "sep")
    n_rand = n // 10
    n_bytes = n // 20
    attempts = 0
    while len(out) < n - n_rand - n_bytes and total and attempts < 50 * n:
        attempts += 1
        pos = rng.randrange(total)
        i = bisect.bisect_right(cum, pos)
        start = pos - (cum[i - 1] if i else 0)
        add(blobs[i][start:start + rng.randint(1, MAX_QUERY_LEN)], "corpus")
    while len(out) < n - n_bytes and attempts < 100 * n:
        attempts += 1
        add(bytes(rng.choice(alphabet) for _ in range(rng.randint(1, MAX_QUERY_LEN))), "random")
    while len(out) < n and attempts < 150 * n:
        attempts += 1
        add(bytes(rng.randrange(255) for _ in range(rng.randint(1, 8))), "bytes")
    return out[:n]


def naive_count(corpus, q):
    """Overlapping occurrences of q in the raw corpus."""
    if len(q) == 1:
        return corpus.count(q)
    n, i, find = 0, corpus.find(q), corpus.find
    while i >= 0:
        n += 1
        i = find(q, i + 1)
    return n


# --------------------------------------------------------------------------


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--engine-worker":
        return engine_worker()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--docs", type=Path, help="directory of documents, one UTF-8 file each")
    src.add_argument("--generate", type=int, metavar="N_TOKENS",
                     help="write a synthetic corpus of at least N_TOKENS bytes (u8 tokens) to WORKDIR/docs")
    ours = ap.add_mutually_exclusive_group()
    ours.add_argument("--ours", type=Path, metavar="DIR", help="our index directory, already built from the same documents")
    ours.add_argument("--ours-cmd", metavar="TEMPLATE",
                      help="shell command that builds our index; {docs}, {jsonl}, {out} are substituted")
    ap.add_argument("--workdir", type=Path, help="working directory (default: a new temp dir, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--sep-queries", type=int, default=0,
                    help="also add K queries spanning a document boundary (containing 0xFF); infini-gram counts these")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ig-python", default=sys.executable, help="interpreter with infini-gram (and numpy) installed")
    ap.add_argument("--ig-cpus", type=int, default=0, help="--cpus for infini-gram's indexer (default: all)")
    ap.add_argument("--ig-mem", type=int, default=8, help="--mem (GiB) for infini-gram's indexer")
    ap.add_argument("--naive-limit", type=int, default=16 << 20,
                    help="also count naively over the raw corpus when it is at most this many bytes")
    ap.add_argument("--full-verify-limit", type=int, default=32 << 20,
                    help="check every suffix-array entry when tokenized.0 is at most this many bytes (else sample)")
    ap.add_argument("--strict-layout", action="store_true",
                    help="fail unless our tokenized.0 and table.0 are byte-identical to infini-gram's")
    ap.add_argument("--no-engine-on-ours", action="store_true", help="skip opening our index with infini-gram's engine")
    ap.add_argument("--timing-only", action="store_true",
                    help="with --ours-cmd: build both indexes, print the times side by side and stop (for "
                         "`index build-files --attribution`, whose tokenized.0 is normalised text)")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    if args.workdir:
        work = args.workdir
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="igcc-"))
    work = work.resolve()
    print(f"workdir: {work}")
    failures = []
    finished = False
    try:
        if args.generate is not None:
            docs_dir = work / "docs"
            if docs_dir.exists():
                shutil.rmtree(docs_dir)
            generate_corpus(args.generate, docs_dir, args.seed)
        else:
            docs_dir = args.docs.resolve()
        docs = load_docs(docs_dir)
        corpus = b"".join(bytes([SEP]) + d for _, d in docs)  # infini-gram's tokenized.0, for naive counting
        ds_size = sum(len(d) + 1 for _, d in docs)
        print(f"corpus: {len(docs)} documents, {ds_size - len(docs)} bytes of text, "
              f"{ds_size} bytes with one 0xFF before each document")
        jsonl = work / "jsonl" / "corpus.jsonl"
        write_jsonl(docs, jsonl)

        ig_dir = work / "ig-index"
        if ig_dir.exists():
            shutil.rmtree(ig_dir)  # infini-gram skips steps whose files exist
        ig_wall, ig_peak = build_infinigram(args, jsonl.parent, ig_dir, ds_size, work)

        if args.ours_cmd:
            ours_dir = work / "ours-index"
            if ours_dir.exists():
                shutil.rmtree(ours_dir)
            cmd = args.ours_cmd.format(docs=shlex.quote(str(docs_dir)), jsonl=shlex.quote(str(jsonl)),
                                       out=shlex.quote(str(ours_dir)))
            print("ours:", cmd)
            rc, wall, peak, srcname = run_timed(cmd, work / "ours-index.log", shell=True)
            if rc != 0:
                print((work / "ours-index.log").read_text(errors="replace")[-3000:])
                sys.exit(f"error: our indexer failed (rc={rc})")
            print(f"our index: {wall:.2f}s wall, peak RSS {fmt_kib(peak)} ({srcname})")
            print(f"build time: ours {wall:.2f}s, infini-gram {ig_wall:.2f}s: "
                  f"infini-gram / ours = {ig_wall / wall:.2f}x")
            label = "ours"
            if args.timing_only:
                finished = True
                return 0
        elif args.ours:
            ours_dir = args.ours.resolve()
            label = "ours"
        else:
            ours_dir = ig_dir
            label = "reader-on-infini-gram"
            print("no --ours/--ours-cmd: validating this script's reader on infini-gram's own index")

        # structure
        ig = Index(ig_dir)
        ig_checks = ig.structure(len(docs), args.full_verify_limit, rng)
        ig_checks.insert(0, (ig.ds[:] == corpus, "tokenized.0 == concatenation of 0xFF + document bytes, in file order"))
        ours_idx = Index(ours_dir) if ours_dir != ig_dir else ig
        ours_checks = ig_checks if ours_idx is ig else ours_idx.structure(len(docs), args.full_verify_limit, rng)
        for name, checks in (("infini-gram", ig_checks), (label, ours_checks)) if ours_idx is not ig else (("infini-gram", ig_checks),):
            for ok, desc in checks:
                print(f"  [{'ok' if ok else 'FAIL'}] {name}: {desc}")
                if not ok:
                    failures.append(f"{name}: {desc}")
        if ours_idx is not ig:
            for fname in ("tokenized.0", "table.0", "offset.0"):
                a, b = ig_dir / fname, ours_dir / fname
                same = b.exists() and a.read_bytes() == b.read_bytes()
                print(f"  [{'same' if same else 'differs'}] {fname} vs infini-gram's")
                if args.strict_layout and not same:
                    failures.append(f"{fname} differs from infini-gram's")

        # queries
        queries = sample_queries(docs, args.queries, rng, args.sep_queries)
        qs = [q for q, _ in queries]
        kinds = {}
        for _, k in queries:
            kinds[k] = kinds.get(k, 0) + 1
        print(f"queries: {len(qs)} ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))})")

        ref, err = engine_counts(args.ig_python, ig_dir, qs)
        if ref is None:
            sys.exit(f"error: infini-gram engine on its own index: {err}")
        print(f"infini-gram engine: opened in {ref['open_s'] * 1000:.1f} ms, {len(qs)} counts in {ref['count_s'] * 1000:.1f} ms")
        columns = {"infini-gram": ref["counts"]}

        t0 = time.perf_counter()
        columns[f"reader({label})"] = [ours_idx.count(q) for q in qs]
        print(f"reader: {len(qs)} counts in {(time.perf_counter() - t0) * 1000:.1f} ms")

        if ours_idx is not ig and not args.no_engine_on_ours:
            eo, err = engine_counts(args.ig_python, ours_dir, qs)
            if eo is None:
                print(f"  [FAIL] infini-gram engine cannot open {label}: {err}")
                failures.append(f"infini-gram engine on ours: {err}")
            else:
                columns["infini-gram-engine(ours)"] = eo["counts"]

        if len(corpus) <= args.naive_limit:
            t0 = time.perf_counter()
            columns["naive"] = [naive_count(corpus, q) for q in qs]
            print(f"naive: {len(qs)} counts in {(time.perf_counter() - t0) * 1000:.1f} ms")

        passed = failed = 0
        shown = 0
        names = list(columns)
        for i, (q, kind) in enumerate(queries):
            vals = [columns[c][i] for c in names]
            if all(v == vals[0] for v in vals):
                passed += 1
            else:
                failed += 1
                if shown < 20:
                    shown += 1
                    print(f"  MISMATCH {kind} {q!r}: " + ", ".join(f"{c}={v}" for c, v in zip(names, vals)))
        nz = sum(1 for v in columns["infini-gram"] if v)
        print(f"compared: {', '.join(names)}; {nz} of {len(qs)} queries occur at least once")
        for c in names[1:]:
            bad = [k for (q, k), a, b in zip(queries, columns["infini-gram"], columns[c]) if a != b]
            if bad:
                by_kind = {}
                for k in bad:
                    by_kind[k] = by_kind.get(k, 0) + 1
                print(f"  {c} disagrees with infini-gram on {len(bad)} queries "
                      f"({', '.join(f'{v} {k}' for k, v in sorted(by_kind.items()))})")
        if failures:
            print(f"structure: {len(failures)} failed check(s)")
        print(f"{passed} passed, {failed} failed")
        ig.close()
        if ours_idx is not ig:
            ours_idx.close()
        finished = True
        return 1 if failed or failures else 0
    finally:
        if not args.keep and not args.workdir and finished:
            shutil.rmtree(work, ignore_errors=True)
        elif not args.keep and not args.workdir:
            print(f"kept {work} for inspection", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
