// shoulders explorer: checks the checkpoint's log signature and witness cosignatures (WebCrypto
// Ed25519) and inclusion proofs against its root (WebCrypto SHA-256), and runs the "try it" box.
// Served by the shoulders binary itself; no third-party code.
"use strict";

const b64ToBytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const bytesToB64 = (b) => btoa(String.fromCharCode(...b));

async function sha256(...parts) {
  const buf = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { buf.set(p, o); o += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
}

const utf8 = new TextEncoder();
const hex8 = (n) => n.toString(16).padStart(8, "0");

// Strict, canonical base64 (what Rust's base64 STANDARD engine accepts), or an error.
function b64Strict(s, what) {
  if (typeof s !== "string" || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) {
    throw new Error(`${what} is not base64`);
  }
  const b = b64ToBytes(s);
  if (bytesToB64(b) !== s) throw new Error(`${what} is not canonical base64`);
  return b;
}

// Signed-note key names: non-empty, no whitespace, no '+'.
const validKeyName = (n) => typeof n === "string" && n.length > 0 && !/[\s+]/u.test(n);

const MAX_NOTE_BYTES = 1000000;
const MAX_NOTE_SIGNATURES = 100;

// A C2SP signed note holding a C2SP tlog-checkpoint, parsed as strictly as the Rust side
// (signed_note + tlog_tiles): UTF-8, no control characters but newline, the text ends at the
// last blank line, each signature line is `— <name> <base64(key id ‖ signature)>`, and the
// text is origin, decimal size, base64 32-byte root hash, then optional extension lines.
function parseCheckpoint(bytes) {
  const bad = (why) => new Error(`the checkpoint is malformed: ${why}`);
  if (bytes.length > MAX_NOTE_BYTES) throw bad("too long");
  let note;
  try { note = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes); } catch { throw bad("not UTF-8"); }
  if (note.charCodeAt(0) === 0xfeff) throw bad("starts with a byte-order mark");
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) throw bad("holds a control character");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw bad("no blank line before the signatures");
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (!block.endsWith("\n")) throw bad("the signatures do not end with a newline");
  const sigLines = block.slice(0, -1).split("\n");
  if (sigLines.length > MAX_NOTE_SIGNATURES) throw bad("too many signatures");
  const sigs = sigLines.map((line) => {
    if (!line.startsWith("\u2014 ")) throw bad(`signature line ${JSON.stringify(line)} does not start with "— "`);
    const rest = line.slice(2);
    const sp = rest.indexOf(" ");
    if (sp < 0) throw bad(`signature line ${JSON.stringify(line)} has no signature`);
    const name = rest.slice(0, sp), b64 = rest.slice(sp + 1);
    if (!validKeyName(name)) throw bad(`signature name ${JSON.stringify(name)} is not a key name`);
    const raw = b64Strict(b64, `the signature of ${name}`);
    if (raw.length < 5) throw bad(`the signature of ${name} is too short`);
    const id = new DataView(raw.buffer, raw.byteOffset).getUint32(0);
    return { name, id, sig: raw.slice(4), line };
  });
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3 || lines.some((l) => l === "")) throw bad("needs origin, size and root lines, none empty");
  const [origin, sizeText, root] = lines;
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw bad(`tree size ${JSON.stringify(sizeText)} is not a decimal number`);
  }
  const rootBytes = b64Strict(root, "the root hash");
  if (rootBytes.length !== 32) throw bad("the root hash is not 32 bytes");
  return { text, textBytes: utf8.encode(text), origin, size: Number(sizeText), root, sigs };
}

// A verifier key `<name>+<8 hex key id>+<base64(type ‖ ed25519 public key)>`, checked: the type
// byte is `type` (0x01 for a log, 0x04 for a cosignature/v1 witness) and the id is the first
// four bytes of SHA-256(name ‖ "\n" ‖ type ‖ key).
async function parseVerifierKey(vkey, type, what) {
  const bad = (why) => new Error(`${what} ${JSON.stringify(vkey)}: ${why}`);
  if (typeof vkey !== "string") throw bad("is not a string");
  const a = vkey.indexOf("+"), b = a < 0 ? -1 : vkey.indexOf("+", a + 1);
  if (b < 0) throw bad("must be <name>+<id>+<key>");
  const name = vkey.slice(0, a), idHex = vkey.slice(a + 1, b);
  if (!validKeyName(name)) throw bad("the name is not a key name");
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw bad("the key id is not 8 hex digits");
  const raw = b64Strict(vkey.slice(b + 1), "the key");
  if (raw.length !== 33 || raw[0] !== type) {
    throw bad(`not an ed25519 key of type 0x${type.toString(16).padStart(2, "0")}`);
  }
  const digest = await sha256(utf8.encode(name), Uint8Array.of(0x0a), raw);
  const id = new DataView(digest.buffer).getUint32(0);
  if (hex8(id) !== idHex) throw bad("the key id does not match the name and key");
  return { vkey, name, id, pub: raw.slice(1) };
}

class NoEd25519 extends Error {}

// Ed25519 through WebCrypto; false for a signature that does not verify or a key that is not a
// valid point, NoEd25519 where the browser lacks the algorithm.
async function ed25519Verify(pub, sig, msg) {
  let key;
  try {
    key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
  } catch (e) {
    if (e && e.name === "NotSupportedError") {
      throw new NoEd25519("this browser's WebCrypto has no Ed25519 (Chromium 137+, Firefox 129+ and Safari 17+ have it), " +
        "so it cannot check the checkpoint's signatures; use a newer browser or `shoulders watch`");
    }
    return false;
  }
  if (sig.length !== 64) return false;
  try {
    return await crypto.subtle.verify({ name: "Ed25519" }, key, sig, msg);
  } catch (e) {
    return false;
  }
}

// C2SP tlog-cosignature/v1: the witness signs `cosignature/v1\ntime <T>\n` ‖ checkpoint text.
function cosignedMessage(textBytes, timestamp) {
  const head = utf8.encode(`cosignature/v1\ntime ${timestamp}\n`);
  const msg = new Uint8Array(head.length + textBytes.length);
  msg.set(head);
  msg.set(textBytes, head.length);
  return msg;
}

async function getOrNull(url) {
  const resp = await fetch(url, { cache: "no-store" });
  if (resp.status === 404) return null;
  if (!resp.ok) throw new Error(`${url} answered ${resp.status}: ${await resp.text()}`);
  return resp;
}

// The log's key and the witness policy: /api/witnesses, or where the server has none, the log
// key rendered into the page (`data-log-vkey`) and no witnesses. Both come from this server.
async function loadPolicy(pageVkey) {
  const resp = await getOrNull("/api/witnesses");
  let p = { log_vkey: pageVkey, quorum: 0, witnesses: [], served: false };
  if (resp) {
    const v = await resp.json();
    if (!v || typeof v !== "object" || !Array.isArray(v.witnesses) || !Number.isSafeInteger(v.quorum)) {
      throw new Error("/api/witnesses is malformed");
    }
    if (pageVkey && v.log_vkey !== pageVkey) {
      throw new Error(`the server names two log keys: ${v.log_vkey} (/api/witnesses) and ${pageVkey} (this page)`);
    }
    p = { log_vkey: v.log_vkey, quorum: v.quorum, witnesses: v.witnesses, served: true };
  }
  if (!p.log_vkey) throw new Error("the server does not say which key signs its log");
  const log = await parseVerifierKey(p.log_vkey, 0x01, "the log key");
  const witnesses = [];
  for (const w of p.witnesses) {
    const k = await parseVerifierKey(w && w.vkey, 0x04, "witness key");
    if (w.name !== undefined && w.name !== k.name) throw new Error(`witness ${w.name} has a key named ${k.name}`);
    if (witnesses.some((o) => o.name === k.name || bytesToB64(o.pub) === bytesToB64(k.pub))) {
      throw new Error(`witness ${k.name} is named twice in the policy`);
    }
    witnesses.push({ ...k, url: w.url });
  }
  const n = witnesses.length;
  if (n === 0 ? p.quorum !== 0 : p.quorum < 1 || p.quorum > n) {
    throw new Error(`the witness policy's quorum ${p.quorum} is not 1..=${n}`);
  }
  return { log, witnesses, quorum: p.quorum, served: p.served };
}

// Fetch the signed checkpoint (with cosignatures from /log/checkpoint; /api/checkpoint where
// the server has no such route) and check it the way the Rust WitnessPolicy::open does: the
// log's signature must verify; every cosignature line from a policy witness (same name and key
// id) must verify, a bad one is a forgery and fails the checkpoint; at least `quorum` distinct
// policy witnesses must have cosigned. Lines from other keys are ignored.
async function verifyCheckpoint(pageVkey) {
  const r = { logOk: false, witnessOk: false, verified: false, witnesses: [], others: [], forged: [] };
  const policy = r.policy = await loadPolicy(pageVkey);
  let resp = await getOrNull("/log/checkpoint");
  r.source = "/log/checkpoint";
  if (!resp) { resp = await getOk("/api/checkpoint"); r.source = "/api/checkpoint"; }
  const cp = r.cp = parseCheckpoint(new Uint8Array(await resp.arrayBuffer()));
  const seen = new Set();
  let logSig = null;
  const valid = new Map();
  for (const s of cp.sigs) {
    const key = `${s.name}+${hex8(s.id)}`;
    if (s.name === policy.log.name && s.id === policy.log.id) {
      if (!seen.has(key)) logSig = s;
      seen.add(key);
      continue;
    }
    const w = policy.witnesses.find((x) => x.name === s.name && x.id === s.id);
    if (!w) { r.others.push(s.name); continue; }
    if (seen.has(key)) continue;
    seen.add(key);
    let ok = false, time = null;
    if (s.sig.length === 72) {
      time = new DataView(s.sig.buffer, s.sig.byteOffset).getBigUint64(0);
      ok = await ed25519Verify(w.pub, s.sig.slice(8), cosignedMessage(cp.textBytes, time));
    }
    if (ok) valid.set(w.name, time); else r.forged.push(w.name);
  }
  if (cp.origin !== policy.log.name) {
    r.logError = `the checkpoint's origin ${cp.origin} is not the log key's name ${policy.log.name}`;
  } else if (!logSig) {
    r.logError = `no signature by the log key ${policy.log.name}+${hex8(policy.log.id)}`;
  } else if (!(await ed25519Verify(policy.log.pub, logSig.sig, cp.textBytes))) {
    r.logError = "the log's signature does not verify";
  } else {
    r.logOk = true;
  }
  r.witnesses = policy.witnesses.map((w) => ({
    name: w.name,
    status: r.forged.includes(w.name) ? "forged" : valid.has(w.name) ? "cosigned" : "absent",
    time: valid.get(w.name),
  }));
  r.cosigned = valid.size;
  r.witnessOk = r.forged.length === 0 && valid.size >= policy.quorum;
  r.verified = r.logOk && r.witnessOk;
  return r;
}

function unixTime(t) {
  const d = new Date(Number(t) * 1000);
  return Number.isNaN(d.getTime()) ? `time ${t}` : d.toISOString().replace(".000Z", "Z");
}

function setState(node, state, text) {
  node.dataset.state = state;
  node.className = state;
  node.textContent = text;
}

// Show a checkpoint check in `box` (its children with data-testid log-signature,
// witness-quorum, witness-list and checkpoint-status are filled in).
function showCheckpoint(box, r, err) {
  const part = (id) => box.querySelector(`[data-testid=${id}]`);
  const status = part("checkpoint-status");
  if (err) {
    setState(part("log-signature"), "failed", `✗ Log signature not checked: ${err.message}`);
    setState(part("witness-quorum"), "failed", "✗ Witness cosignatures not checked.");
    part("witness-list").replaceChildren();
    setState(status, "failed", `✗ Checkpoint NOT verified: ${err.message}`);
    box.dataset.state = "failed";
    return;
  }
  const { policy, cp } = r;
  setState(part("log-signature"), r.logOk ? "verified" : "failed", r.logOk
    ? `✓ Log signature verified with ${policy.log.vkey} (tree size ${cp.size}, root ${cp.root}, from ${r.source}).`
    : `✗ Log signature does NOT verify: ${r.logError} (key ${policy.log.vkey}, from ${r.source}).`);
  const n = policy.witnesses.length;
  const quorum = part("witness-quorum");
  if (n === 0) {
    setState(quorum, "none", policy.served
      ? "No witness policy: this log names no witnesses, so nothing but the log vouches for this checkpoint."
      : "No witness policy: this server publishes none (no /api/witnesses), so nothing but the log vouches for this checkpoint.");
  } else {
    let text = `${r.witnessOk ? "✓" : "✗"} cosigned by ${r.cosigned} of ${n} witnesses (quorum ${policy.quorum})`;
    if (r.forged.length) text += `: FORGED cosignature from ${r.forged.join(", ")}`;
    else if (!r.witnessOk) text += ": quorum not met";
    setState(quorum, r.witnessOk ? "verified" : "failed", text + ".");
  }
  const items = r.witnesses.map((w) => el("li", { "data-testid": "witness", "data-name": w.name, "data-status": w.status,
    class: w.status === "cosigned" ? "yes" : w.status === "forged" ? "bad" : "" },
    `${w.name}: ${w.status === "cosigned" ? `✓ cosigned at ${unixTime(w.time)}`
      : w.status === "forged" ? "✗ forged cosignature (does not verify)" : "no cosignature"}`));
  for (const name of new Set(r.others)) {
    items.push(el("li", { "data-testid": "witness", "data-name": name, "data-status": "not-in-policy", class: "note" },
      `${name}: not in policy (ignored)`));
  }
  part("witness-list").replaceChildren(...items);
  setState(status, r.verified ? "verified" : "failed", r.verified
    ? `✓ Checkpoint verified: tree size ${cp.size}, root ${cp.root}.`
    : `✗ Checkpoint NOT verified${r.logOk ? ": the witness policy is not met" : ": the log's signature does not verify"}.`);
  box.dataset.state = r.verified ? "verified" : "failed";
}

async function checkCheckpoint(box) {
  try {
    if (!window.crypto || !crypto.subtle) {
      throw new Error("WebCrypto is only available on https:// or localhost pages; open the explorer there");
    }
    const r = await verifyCheckpoint(box.dataset.logVkey);
    showCheckpoint(box, r, null);
    return r;
  } catch (e) {
    showCheckpoint(box, null, e);
    return null;
  }
}

// RFC 9162 §2.1.3.2: the root implied by a leaf hash and its inclusion proof, or null.
async function rootFromInclusionProof(index, size, leafHash, path) {
  if (index >= size) return null;
  let fn = index, sn = size - 1, r = leafHash;
  for (const p of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(Uint8Array.of(1), p, r);
      while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await sha256(Uint8Array.of(1), r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

async function getOk(url) {
  const resp = await fetch(url, { cache: "no-store" });
  if (!resp.ok) throw new Error(`${url} answered ${resp.status}: ${await resp.text()}`);
  return resp;
}

async function checkProof(section) {
  const index = Number(section.dataset.index);
  const status = section.querySelector("[data-testid=proof-status]");
  const show = (state, text) => {
    section.dataset.state = state;
    setState(status, state, text);
  };
  try {
    // The proof is checked against the root of a checkpoint whose signature verified, never
    // against a root the server merely states.
    const r = await checkCheckpoint(section.querySelector("[data-testid=checkpoint-verify]"));
    if (!r) return show("failed", "NOT verified: the checkpoint could not be checked (see above).");
    if (!r.logOk) return show("failed", "NOT verified: the checkpoint's log signature does not verify, so its root proves nothing.");
    const cp = r.cp;
    const recResp = await getOk(`/api/records/${index}`);
    const bytes = new Uint8Array(await recResp.arrayBuffer());
    const proof = await (await getOk(`/api/proofs/inclusion?index=${index}&size=${cp.size}`)).json();
    const leaf = await sha256(Uint8Array.of(0), bytes);
    const root = await rootFromInclusionProof(index, cp.size, leaf, proof.hashes.map(b64ToBytes));
    const got = root ? bytesToB64(root) : "(path does not fold to a root)";
    if (got !== cp.root) {
      show("failed", `NOT verified: the proof gives root ${got}, the signed checkpoint says ${cp.root}.`);
    } else if (!r.witnessOk) {
      show("failed", `NOT verified: the proof folds to the log-signed root ${cp.root}, but the checkpoint fails ` +
        "its witness policy, so it may be a view shown only to you.");
    } else {
      show("verified", `Verified against checkpoint root ${cp.root} (tree size ${cp.size}, log signature ✓` +
        `${r.policy.witnesses.length ? `, ${r.cosigned} of ${r.policy.witnesses.length} witnesses ✓` : ", no witness policy"}): ` +
        `leaf hash ${bytesToB64(leaf)} of these ${bytes.length} bytes, ${proof.hashes.length} proof hashes.`);
    }
  } catch (e) {
    show("failed", `Could not verify: ${e.message}`);
  }
}

// Move a UTF-8 byte offset forward to a character boundary.
function boundary(bytes, i) {
  while (i < bytes.length && (bytes[i] & 0xc0) === 0x80) i++;
  return i;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

// The answer with attributed spans highlighted; span offsets are UTF-8 byte offsets.
function renderAnswer(text, spans) {
  const bytes = new TextEncoder().encode(text);
  const dec = new TextDecoder();
  const out = el("p", { class: "answer", "data-testid": "try-answer" });
  const sorted = [...spans].sort((a, b) => a.start - b.start);
  let pos = 0;
  for (const s of sorted) {
    const start = boundary(bytes, Math.max(s.start, pos));
    const end = boundary(bytes, Math.min(s.end, bytes.length));
    if (start >= end) continue;
    out.append(dec.decode(bytes.slice(pos, start)));
    // Credit goes to the contributions that first contributed the span's content (copies
    // earn nothing), so the links name those, with their contributors where known.
    const names = new Map((s.contributions || []).map((c) => [c.contribution, c.contributor]));
    const credited = s.credited || [];
    const who = credited.map((c) => names.get(c)).filter(Boolean);
    const mark = el("mark", { "data-testid": "attributed-span", title: `credited to ${who.join(", ") || "contributed data"}` },
      dec.decode(bytes.slice(start, end)));
    out.append(mark);
    for (const c of credited) {
      const by = names.get(c);
      out.append(el("a", { href: `/records/${c}`, class: "src", "data-testid": "span-source",
        title: `contribution #${c}${by ? " by " + by : ""}` }, `[#${c}]`));
    }
    pos = end;
  }
  out.append(dec.decode(bytes.slice(pos)));
  return out;
}

async function runTry(form, output) {
  const data = new FormData(form);
  output.replaceChildren(el("p", { class: "pending" }, "Generating…"));
  output.dataset.state = "pending";
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${data.get("key").trim()}` },
      body: JSON.stringify({
        model: data.get("model"), use: data.get("use"), max_tokens: 160, seed: Date.now() % 1000,
        messages: [{ role: "user", content: data.get("prompt") }],
      }),
    });
    const v = await resp.json();
    if (!resp.ok) {
      output.dataset.state = "error";
      output.replaceChildren(el("p", { class: "error", "data-testid": "try-error" },
        `${v.error ? v.error.code + ": " + v.error.message : resp.status}`));
      return;
    }
    const text = v.choices[0].message.content;
    const sh = v.shoulders || {};
    const spans = (sh.attribution && sh.attribution.spans) || [];
    const parts = [renderAnswer(text, spans)];
    const meta = el("p", { class: "note", "data-testid": "try-meta" });
    meta.append(`${spans.length} attributed span(s) from ${sh.attribution ? sh.attribution.dataset_id : "no indexed dataset"}. `);
    if (sh.receipt) {
      meta.append("Metered: ", el("a", { href: `/records/${sh.receipt.index}`, "data-testid": "try-receipt" },
        `receipt #${sh.receipt.index}`), ` (${sh.receipt.usage_id}), paid by ${sh.payer}.`);
    } else {
      meta.append("Not metered (metering is off).");
    }
    parts.push(meta);
    const sources = new Map();
    for (const s of spans) {
      const names = new Map((s.contributions || []).map((c) => [c.contribution, c.contributor]));
      for (const c of s.credited || []) sources.set(c, names.get(c));
    }
    if (sources.size) {
      const ul = el("ul", { class: "sources" });
      for (const [c, who] of sources) {
        const li = el("li", {}, el("a", { href: `/records/${c}` }, `contribution #${c}`));
        if (who) li.append(" by ", el("a", { href: `/actors/${encodeURIComponent(who)}` }, who));
        ul.append(li);
      }
      parts.push(ul);
    }
    output.replaceChildren(...parts);
    output.dataset.state = "done";
  } catch (e) {
    output.dataset.state = "error";
    output.replaceChildren(el("p", { class: "error", "data-testid": "try-error" }, `The call failed: ${e.message}`));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const s of document.querySelectorAll("#proof[data-index]")) checkProof(s);
  for (const b of document.querySelectorAll("#checkpoint-verify")) checkCheckpoint(b);
  const form = document.getElementById("try-form");
  if (form) {
    const output = document.getElementById("try-output");
    const model = form.elements.model, use = form.elements.use;
    const syncUse = () => {
      const o = model.selectedOptions[0];
      if (o && o.dataset.defaultUse) use.value = o.dataset.defaultUse;
    };
    model.addEventListener("change", syncUse);
    syncUse();
    form.addEventListener("submit", (ev) => { ev.preventDefault(); runTry(form, output); });
  }
});
