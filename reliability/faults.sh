#!/usr/bin/env bash
# I/O fault injection against the engine, through the `shoulders` binary:
#  1. a full disk (the ledger on a small tmpfs): writes are refused with a clear error, no
#     acknowledged record is lost, the log verifies, and writes succeed again once space returns;
#  2. failing fsync/fdatasync (strace --inject): the write is refused, never acknowledged, and the
#     log still verifies afterwards.
# Needs root (mount) and strace; prints one summary line per scenario and exits non-zero on any
# broken promise.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${SHOULDERS_BIN:-$PWD/target/debug/shoulders}"
[ -x "$bin" ] || cargo build -q -p shoulders-cli
work="$(mktemp -d)"
mnt="$work/mnt"
cleanup() { mountpoint -q "$mnt" && umount "$mnt"; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAULTS FAILED: $*" >&2; exit 1; }

key="$work/alice.key"
"$bin" key new --out "$key" >/dev/null
echo '{"handle":"alice","name":"Alice"}' > "$work/actor.json"

# ---- 1. full disk -----------------------------------------------------------------------------
# On a 3 MiB tmpfs when this machine lets us mount one; otherwise (e.g. an unprivileged
# container) the file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so writes fail with EFBIG)
# plays the full disk for the database files.
mkdir -p "$mnt"
mode=tmpfs
if [ -n "${SHOULDERS_FAULTS_NO_MOUNT:-}" ] || ! mount -t tmpfs -o size=3m tmpfs "$mnt" 2>/dev/null; then
    mode=rlimit
fi
data="$mnt/ledger"
"$bin" init --data-dir "$data" --origin faults.example/log > "$work/vkey"
"$bin" submit --data-dir "$data" --key "$key" --kind actor.register --body "$work/actor.json" --id reg >/dev/null
limit_kib=0
if [ "$mode" = tmpfs ]; then
    # Leave a little room: a filler file takes most of the free space.
    avail_kib=$(df --output=avail -k "$mnt" | tail -1)
    dd if=/dev/zero of="$mnt/filler" bs=1K count=$((avail_kib - 160)) status=none 2>/dev/null || true
else
    limit_kib=$(( $(du -k "$data/ledger.sqlite" | cut -f1) + 64 ))
fi
submit_limited() {
    if [ "$mode" = tmpfs ]; then
        "$bin" "$@"
    else
        ( trap '' XFSZ; ulimit -f "$limit_kib"; exec "$bin" "$@" )
    fi
}
acked=()
refused_code=""
for i in $(seq 1 2000); do
    # Bodies of ~3 KiB fill the disk quickly.
    printf '{"dataset_id":"alice/d%d","name":"D","access":"open","description":"%s"}' "$i" "$(head -c 3000 /dev/zero | tr '\0' x)" > "$work/ds.json"
    if out=$(submit_limited submit --data-dir "$data" --key "$key" --kind dataset.create --body "$work/ds.json" --id "ds-$i" 2>"$work/err"); then
        acked+=("$(echo "$out" | sed -n 's/.*"index": \([0-9]*\).*/\1/p')")
    else
        refused_code=$(sed -n 's/^error\[\([A-Z_]*\)\].*/\1/p' "$work/err" | head -1)
        break
    fi
done
[ -n "$refused_code" ] || fail "the disk never filled"
case "$refused_code" in E_STORAGE|E_IO) ;; *) fail "full disk gave $refused_code: $(cat "$work/err")";; esac
[ "${#acked[@]}" -gt 0 ] || fail "no write fitted before the disk filled; the scenario proves nothing"
# Every acknowledged record is in the log, and the log verifies (export written off the full disk).
"$bin" export --data-dir "$data" --out "$work/export.txt" >/dev/null
report=$("$bin" verify "$work/export.txt" --key "$work/vkey")
size=$(echo "$report" | sed -n 's/.*"tree_size": \([0-9]*\).*/\1/p')
last="${acked[-1]}"
[ "$size" -gt "$last" ] || fail "acknowledged record $last missing (log size $size)"
for idx in "${acked[@]}"; do
    "$bin" proof inclusion --data-dir "$data" --index "$idx" >/dev/null || fail "acknowledged record $idx has no inclusion proof"
done
# Space returns: writes succeed again.
rm -f "$mnt/filler"
"$bin" submit --data-dir "$data" --key "$key" --kind dataset.create --body "$work/ds.json" --id "after-full" >/dev/null \
    || fail "writes did not recover after space returned"
"$bin" export --data-dir "$data" --out "$work/export2.txt" >/dev/null
"$bin" verify "$work/export2.txt" --key "$work/vkey" >/dev/null || fail "log does not verify after recovery"
echo "faults: full disk ($mode): ${#acked[@]} writes acknowledged, then refused with $refused_code; 0 acknowledged records lost; log verifies; writes recovered after space returned"
if mountpoint -q "$mnt"; then umount "$mnt"; fi

# ---- 2. failing fsync -------------------------------------------------------------------------
if ! command -v strace >/dev/null 2>&1; then
    fail "strace is not installed (apt-get install strace)"
fi
data="$work/ledger2"
"$bin" init --data-dir "$data" --origin faults.example/log > "$work/vkey2"
"$bin" submit --data-dir "$data" --key "$key" --kind actor.register --body "$work/actor.json" --id reg >/dev/null
refused=0
for i in 1 2 3 4 5; do
    printf '{"dataset_id":"alice/s%d","name":"S","access":"open"}' "$i" > "$work/s.json"
    if strace -f -qq -o /dev/null -e trace=fsync,fdatasync -e inject=fsync,fdatasync:error=EIO \
        "$bin" submit --data-dir "$data" --key "$key" --kind dataset.create --body "$work/s.json" --id "s-$i" --ts-ms 1800000000000 >"$work/out" 2>"$work/err"; then
        fail "a write was acknowledged although every fsync failed: $(cat "$work/out")"
    fi
    grep -q '^error\[E_STORAGE\]' "$work/err" || fail "failed fsync gave: $(cat "$work/err")"
    refused=$((refused + 1))
done
# Without faults the ledger opens, verifies and accepts writes. A refused write may still have
# reached the disk (the failed fsync came after the write); the client was never told it was
# saved, and retrying it with the same id and bytes is answered as a duplicate, never twice.
present=0
for i in 1 2 3 4 5; do
    printf '{"dataset_id":"alice/s%d","name":"S","access":"open"}' "$i" > "$work/s.json"
    out=$("$bin" submit --data-dir "$data" --key "$key" --kind dataset.create --body "$work/s.json" --id "s-$i" --ts-ms 1800000000000) \
        || fail "retrying refused write $i failed"
    echo "$out" | grep -q '"duplicate": true' && present=$((present + 1))
done
printf '{"dataset_id":"alice/after","name":"S","access":"open"}' > "$work/s.json"
"$bin" submit --data-dir "$data" --key "$key" --kind dataset.create --body "$work/s.json" --id "after-fsync" >/dev/null \
    || fail "writes did not recover after fsync failures"
"$bin" export --data-dir "$data" --out "$work/export3.txt" >/dev/null
"$bin" verify "$work/export3.txt" --key "$work/vkey2" >/dev/null || fail "log does not verify after fsync failures"
echo "faults: failing fsync: $refused writes refused with E_STORAGE, none acknowledged ($present had reached the disk anyway; their retries were answered as duplicates); log verifies; writes recovered"
