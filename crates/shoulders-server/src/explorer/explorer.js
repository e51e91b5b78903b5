// shoulders explorer: checks inclusion proofs with WebCrypto and runs the "try it" box.
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

// C2SP signed note: origin, tree size, base64 root hash, blank line, signatures.
function parseCheckpoint(text) {
  const lines = text.split("\n");
  const size = Number(lines[1]);
  if (!lines[0] || !Number.isSafeInteger(size) || !lines[2]) throw new Error("the checkpoint is malformed");
  return { origin: lines[0], size, root: lines[2] };
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
    status.className = state;
    status.textContent = text;
  };
  try {
    if (!window.crypto || !crypto.subtle) {
      throw new Error("WebCrypto is only available on https:// or localhost pages; open the explorer there");
    }
    const [recResp, cpResp] = await Promise.all([getOk(`/api/records/${index}`), getOk("/api/checkpoint")]);
    const bytes = new Uint8Array(await recResp.arrayBuffer());
    const cp = parseCheckpoint(await cpResp.text());
    const proof = await (await getOk(`/api/proofs/inclusion?index=${index}&size=${cp.size}`)).json();
    const leaf = await sha256(Uint8Array.of(0), bytes);
    const root = await rootFromInclusionProof(index, cp.size, leaf, proof.hashes.map(b64ToBytes));
    const got = root ? bytesToB64(root) : "(path does not fold to a root)";
    if (got === cp.root) {
      show("verified", `Verified against checkpoint root ${cp.root} (tree size ${cp.size}): ` +
        `leaf hash ${bytesToB64(leaf)} of these ${bytes.length} bytes, ${proof.hashes.length} proof hashes.`);
    } else {
      show("failed", `NOT verified: the proof gives root ${got}, the checkpoint says ${cp.root}.`);
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
