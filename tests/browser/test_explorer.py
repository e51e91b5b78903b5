"""Browser test of the web explorer: Playwright driving the system's Chromium.

Seeds and serves a ledger with `shoulders demo --listen 127.0.0.1:0`, then opens every page,
checks its content against the REST API, clicks through the lineage graph, waits for the
in-browser (WebCrypto) inclusion-proof check (and makes it fail with tampered bytes), checks the
in-browser verification of the checkpoint's log signature and witness cosignatures against
checkpoints cosigned here by generated witnesses (valid, forged, short of quorum, badly signed),
and runs the "try it" box against the gateway. Screenshots go to target/browser-screenshots/.

    python tests/browser/test_explorer.py --shoulders target/debug/shoulders [--chromium /usr/bin/chromium]
"""

import argparse
import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import unittest
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "target" / "browser-screenshots"
ARGS = None


def start_demo(shoulders, data_dir):
    """Run `shoulders demo` serving on an ephemeral port; return (process, base URL)."""
    proc = subprocess.Popen(
        [shoulders, "demo", "--data-dir", data_dir, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    for line in proc.stdout:
        seen += line
        m = re.search(r'"listening": "(http://[^"]+)"', line)
        if m:
            return proc, m.group(1)
    proc.wait(timeout=30)
    raise RuntimeError(f"shoulders demo exited ({proc.returncode}) before serving:\n{seen}")


def b64(b):
    return base64.b64encode(b).decode()


def key_id(name, type_byte, public):
    """C2SP signed-note key id: the first 4 bytes of SHA-256(name || "\n" || type || key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([type_byte]) + public).digest()[:4]


def note_text(note):
    """The signed text of a signed note (everything before the blank line, newline included)."""
    return note[:note.rindex(b"\n\n") + 1]


class Witness:
    """A C2SP tlog-cosignature/v1 witness key, generated here."""

    def __init__(self, name):
        self.name = name
        self.key = Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.id = key_id(name, 0x04, self.public)

    def vkey(self):
        return f"{self.name}+{self.id.hex()}+{b64(bytes([0x04]) + self.public)}"

    def cosign(self, note, timestamp=None, key=None):
        """The cosignature line over `note`'s text; `key` signs instead of this witness's own key
        (a forgery under this witness's name and key id)."""
        t = int(time.time()) if timestamp is None else timestamp
        msg = f"cosignature/v1\ntime {t}\n".encode() + note_text(note)
        sig = (key or self.key).sign(msg)
        return f"\u2014 {self.name} {b64(self.id + t.to_bytes(8, 'big') + sig)}\n".encode()


def flip_last_signature_byte(line):
    """A signature line with the last byte of its signature flipped."""
    head, sig = line.rstrip(b"\n").rsplit(b" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 0x01
    return head + b" " + b64(bytes(raw)).encode() + b"\n"


class ExplorerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        SHOTS.mkdir(parents=True, exist_ok=True)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.proc, cls.base = start_demo(ARGS.shoulders, os.path.join(cls.tmp.name, "ledger"))
        cls.pw = sync_playwright().start()
        cls.browser = cls.pw.chromium.launch(
            executable_path=ARGS.chromium, headless=True, args=["--no-sandbox"])

    @classmethod
    def tearDownClass(cls):
        cls.browser.close()
        cls.pw.stop()
        cls.proc.terminate()
        cls.proc.wait(timeout=30)
        cls.tmp.cleanup()

    def setUp(self):
        self.context = self.browser.new_context(base_url=self.base, viewport={"width": 1200, "height": 900})
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # Anything the page's Content-Security-Policy blocked (an inline script or style, a
        # request elsewhere) is a bug in the page.
        self.page.on("console", lambda m: self.errors.append(m.text)
                     if m.type == "error" and "Content Security Policy" in m.text else None)

    def tearDown(self):
        self.context.close()
        self.assertEqual(self.errors, [], "no script errors on the page")

    def api(self, path):
        resp = self.page.request.get(self.base + path)
        self.assertTrue(resp.ok, f"{path}: {resp.status}")
        return resp

    def shot(self, name):
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def checkpoint(self):
        lines = self.api("/api/checkpoint").text().split("\n")
        return int(lines[1]), lines[2]

    def expect_proof_verified(self):
        status = self.page.get_by_test_id("proof-status")
        expect(self.page.get_by_test_id("proof")).to_have_attribute("data-state", "verified", timeout=15000)
        size, root = self.checkpoint()
        expect(status).to_contain_text(f"Verified against checkpoint root {root}")
        expect(status).to_contain_text(f"tree size {size}")

    def test_home_shows_checkpoint_records_and_lists(self):
        self.page.goto("/")
        size, root = self.checkpoint()
        expect(self.page.get_by_test_id("tree-size")).to_have_text(str(size))
        expect(self.page.get_by_test_id("root")).to_have_text(root)
        # The latest records, newest first, each linking to its record page.
        rows = self.page.locator("table.records tbody tr")
        expect(rows).to_have_count(25)
        expect(rows.first.locator("a").first).to_have_attribute("href", f"/records/{size - 1}")
        models = [m["model_id"] for m in self.api("/api/models").json()["items"]]
        self.assertEqual(len(models), 4)
        for m in models:
            expect(self.page.locator("table.models")).to_contain_text(m)
        for d in self.api("/api/datasets").json()["items"]:
            expect(self.page.locator("table.datasets")).to_contain_text(d["dataset_id"])
        for a in self.api("/api/actors").json()["items"]:
            expect(self.page.locator("table.actors")).to_contain_text(a["handle"])
        expect(self.page.locator("table.totals")).to_contain_text("yes")
        self.shot("home")

    def test_lineage_graph_click_through_and_licence_card(self):
        self.page.goto("/")
        self.page.locator("table.models").get_by_role("link", name="dave/verse-instruct", exact=True).first.click()
        expect(self.page).to_have_url(re.compile(r"/models/dave/verse-instruct$"))
        tree = self.page.get_by_test_id("family-tree")
        for m in ["carol-lab/verse-base", "dave/verse-instruct", "dave/verse-instruct-q4"]:
            expect(tree.locator(f'a[data-model="{m}"]')).to_have_count(1)
        expect(tree.locator("a.focus")).to_have_attribute("data-model", "dave/verse-instruct")
        expect(tree.locator("text.relation")).to_have_text(["finetune", "quantized"])
        # Ancestors are drawn above, descendants below.
        y = {m: tree.locator(f'a[data-model="{m}"] rect').bounding_box()["y"]
             for m in ["carol-lab/verse-base", "dave/verse-instruct", "dave/verse-instruct-q4"]}
        self.assertLess(y["carol-lab/verse-base"], y["dave/verse-instruct"])
        self.assertLess(y["dave/verse-instruct"], y["dave/verse-instruct-q4"])
        # The licence card says what the license-check API says, in words.
        check = self.api("/api/models/dave/verse-instruct/license-check?use=commercial").json()
        self.assertFalse(check["allowed"])
        card = self.page.get_by_test_id("licence-card")
        expect(card.locator('[data-term="commercial"] dt')).to_contain_text("No")
        expect(card.locator('[data-term="commercial"] dd')).to_contain_text("dave/nc")
        expect(card.locator('[data-term="attribution"] dt')).to_contain_text("Yes")
        price = check["price"]
        expect(card.locator('[data-term="price"]')).to_contain_text(
            f'{int(price["per_call_micros"]) / 1e6:.6f} {price["currency"]} per call')
        for r in check["royalties"]:
            expect(card.locator('[data-term="royalties"]')).to_contain_text(r["owner"])
        lineage = self.api("/api/models/dave/verse-instruct/lineage").json()
        self.assertEqual(len(lineage["datasets"]), 2)
        expect(self.page.get_by_test_id("contributors")).to_have_count(len(lineage["datasets"]))
        for d in lineage["datasets"]:
            row = self.page.locator("table.datasets tbody tr").filter(has_text=d["dataset_id"])
            for c in d["contributors"]:
                expect(row.get_by_test_id("contributors")).to_contain_text(c["handle"])
        self.shot("model-verse-instruct")

        # Click up the graph to the base model, then down two levels.
        tree.locator('a[data-model="carol-lab/verse-base"]').click()
        expect(self.page).to_have_url(re.compile(r"/models/carol-lab/verse-base$"))
        expect(self.page.locator("h1")).to_have_text("carol-lab/verse-base")
        expect(self.page.get_by_test_id("licence-card").locator('[data-term="commercial"] dt')).to_contain_text("Yes")
        self.shot("model-verse-base")
        tree = self.page.get_by_test_id("family-tree")
        expect(tree.locator("a.focus")).to_have_attribute("data-model", "carol-lab/verse-base")
        descendants = self.api("/api/models/carol-lab/verse-base/lineage").json()["descendants"]
        expect(tree.locator("a[data-model]")).to_have_count(1 + len(descendants))
        expect(tree.locator("text.relation")).to_have_text(["adapter", "finetune", "quantized"])
        # The sibling branch: an adapter with no licence, which its card flags.
        tree.locator('a[data-model="alice/verse-adapter"]').click()
        expect(self.page).to_have_url(re.compile(r"/models/alice/verse-adapter$"))
        expect(self.page.get_by_test_id("licence-card").locator('[data-term="unlicensed"]')).to_contain_text(
            "model alice/verse-adapter")
        self.page.get_by_test_id("family-tree").locator('a[data-model="carol-lab/verse-base"]').click()
        expect(self.page).to_have_url(re.compile(r"/models/carol-lab/verse-base$"))
        tree = self.page.get_by_test_id("family-tree")
        tree.locator('a[data-model="dave/verse-instruct-q4"]').click()
        expect(self.page).to_have_url(re.compile(r"/models/dave/verse-instruct-q4$"))
        expect(self.page.get_by_test_id("family-tree").locator("a.focus")).to_have_attribute(
            "data-model", "dave/verse-instruct-q4")
        self.shot("model-verse-instruct-q4")

    def test_model_page_shows_what_changed_from_the_parent(self):
        self.page.goto("/models/dave/verse-instruct")
        diff = self.api("/api/models/dave/verse-instruct/diff").json()
        self.assertEqual(diff["parent"], "carol-lab/verse-base")
        # The demo's fine-tune retrains layers 2-3 of 4 and leaves everything else alone.
        self.assertEqual(diff["totals"]["changed_percent"], "12.6%")
        section = self.page.get_by_test_id("diff")
        expect(section.locator("h2")).to_have_text("What this model changed from its parent")
        expect(section.get_by_test_id("diff-summary")).to_have_text(diff["summary"])
        changed = section.get_by_test_id("diff-changed")
        expect(changed).to_have_text("12.6%")
        expect(changed).to_have_attribute("data-ppm", str(diff["totals"]["changed_ppm"]))
        rows = section.locator("table.diff-layers tbody tr")
        expect(rows).to_have_count(len(diff["layers"]))
        expect(rows.filter(has_text="layer 2")).to_contain_text("100%")
        expect(rows.filter(has_text="layer 0")).to_contain_text("0%")
        expect(section.locator("table.diff-tensors tbody tr")).to_have_count(diff["totals"]["tensors"]["changed"])
        # Each edge of the family tree says what its child changed.
        tree = self.page.get_by_test_id("family-tree")
        edge = tree.locator('g.edge[data-child="dave/verse-instruct"][data-parent="carol-lab/verse-base"]')
        expect(edge.locator("text.summary")).to_have_text("12.6% of parameters changed (layers 2–3)")
        q4 = tree.locator('g.edge[data-child="dave/verse-instruct-q4"] text.summary')
        expect(q4).to_contain_text("all 39 tensors re-typed")
        self.shot("model-verse-instruct-diff")
        # The adapter's page lists the modules it targets.
        self.page.goto("/models/alice/verse-adapter")
        section = self.page.get_by_test_id("diff")
        expect(section.get_by_test_id("diff-adapter")).to_contain_text("on 8 base modules")
        expect(section.locator("table.diff-modules tbody tr")).to_have_count(8)

    def test_dataset_page_lists_contributions(self):
        self.page.goto("/models/carol-lab/verse-base")
        self.page.get_by_role("link", name="carol-lab/public-domain-verse").first.click()
        expect(self.page).to_have_url(re.compile(r"/datasets/carol-lab/public-domain-verse$"))
        ds = self.api("/api/datasets/carol-lab/public-domain-verse").json()
        rows = self.page.locator("table.contributions tbody tr")
        expect(rows).to_have_count(len(ds["contributions"]))
        for c in ds["contribution_records"]:
            expect(self.page.locator(f"#c-{c['index']}")).to_have_count(1)
        self.shot("dataset")

    def test_contributor_page_earnings_and_outputs(self):
        self.page.goto("/models/dave/verse-instruct")
        self.page.get_by_test_id("contributors").get_by_role("link", name="bob").first.click()
        expect(self.page).to_have_url(re.compile(r"/actors/bob$"))
        st = self.api("/api/statements/bob").json()
        usd = next(t for t in st["totals"] if t["currency"] == "USD")
        self.assertGreater(int(usd["unclaimed_micros"]), 0, "bob has no payout address")
        expect(self.page.get_by_test_id("unclaimed")).to_have_text(f'{int(usd["unclaimed_micros"]) / 1e6:.6f}')
        expect(self.page.get_by_test_id("balance")).to_have_text(f'{int(usd["balance_micros"]) / 1e6:.6f}')
        chart = self.page.get_by_test_id("earnings-chart")
        expect(chart).to_have_count(1)
        earned = sum(int(l["amount_micros"]) for l in st["lines"] if l["role"] == "data_share")
        expect(chart).to_contain_text(f"total {earned / 1e6:.6f} USD")
        outputs = {l["index"] for l in st["lines"] if l["role"] == "data_share"}
        expect(self.page.get_by_test_id("outputs-count")).to_contain_text(f"{len(outputs)} outputs")
        self.shot("contributor-bob")
        # An output links to its receipt's record page, whose split pays bob.
        self.page.locator("table.outputs tbody tr").first.locator("a").first.click()
        expect(self.page).to_have_url(re.compile(r"/records/\d+$"))
        expect(self.page.get_by_test_id("record-kind")).to_have_text("usage.receipt")
        expect(self.page.locator("table.legs")).to_contain_text("bob")
        self.expect_proof_verified()
        self.shot("receipt-record")

    def test_dispute_from_start_to_finish(self):
        # The demo's dispute: alice contests frank's earlier upload of her poem and wins.
        disputes = self.api("/api/disputes").json()["items"]
        contested = next(d for d in disputes if d.get("original") is not None)
        self.assertEqual(contested["status"], "upheld")
        self.page.goto("/")
        self.page.locator("table.disputes").get_by_role("link", name=f"#{contested['id']}").click()
        expect(self.page).to_have_url(re.compile(rf"/disputes/{contested['id']}$"))
        expect(self.page.get_by_test_id("dispute-status")).to_contain_text("upheld")
        expect(self.page.get_by_test_id("ruling")).to_contain_text("upheld by operator")
        expect(self.page.get_by_test_id("escrow")).to_contain_text("holds: nothing")
        clawed = int(contested["clawed_back_micros"]["USD"])
        self.assertGreater(clawed, 0, "frank's earnings before the dispute")
        expect(self.page.get_by_test_id("clawback")).to_contain_text(f"{clawed / 1e6:.6f} USD")
        self.shot("dispute")
        # The copy's row on its dataset page says where its credit goes now.
        self.page.get_by_role("link", name=f"contribution #{contested['contribution']}").first.click()
        expect(self.page).to_have_url(re.compile(r"/datasets/carol-lab/public-domain-verse#c-\d+$"))
        row = self.page.locator(f"#c-{contested['contribution']}").locator("xpath=ancestor::tr")
        expect(row).to_contain_text(f"credit goes to #{contested['original']}")
        # alice was paid the escrow: her statement shows the award.
        st = self.api("/api/statements/alice").json()
        self.assertTrue(any(s["role"] == "escrow_award" for s in st["by_source"]), st["by_source"])
        # The reviewed dataset shows its governance and a pending contribution.
        self.page.goto("/datasets/dave/reviewed-notes")
        expect(self.page.get_by_test_id("governance")).to_contain_text("Reviewed")
        expect(self.page.locator("table.contributions")).to_contain_text("pending review")
        expect(self.page.locator("table.contributions")).to_contain_text("reserves text and data mining")
        self.shot("dataset-reviewed")

    def test_training_run_and_credits(self):
        # dave/verse-instruct's training run, as the API returns it, is shown in words.
        t = self.api("/api/models/dave/verse-instruct/training").json()
        run, config = t["training"], t["config"]
        self.assertIsNotNone(config, t.get("config_error"))
        self.page.goto("/models/dave/verse-instruct")
        section = self.page.get_by_test_id("training")
        expect(section).to_be_visible()
        expect(section.get_by_role("heading", name="How it was trained")).to_be_visible()
        fw = run["framework"]
        expect(section.get_by_test_id("training-framework")).to_have_text(f'{fw["name"]} {fw["version"]}')
        code = section.get_by_test_id("training-code")
        expect(code).to_have_attribute("href", run["code"]["repository"])
        expect(section).to_contain_text(run["code"]["commit"])
        expect(section.get_by_test_id("training-compute")).to_contain_text(
            f'{run["compute"]["energy_wh"] / 1000:g} kWh')
        credits = section.get_by_test_id("training-credits").locator("li")
        expect(credits).to_have_count(len(run["credits"]))
        for c in run["credits"]:
            expect(section.get_by_test_id("training-credits")).to_contain_text(
                f'{c["actor"]} — {c["role"].replace("_", " ")}')
        # The configuration: a row per setting, nested settings as dotted keys.
        table = section.get_by_test_id("training-config").locator("table")
        expect(table.locator("tr", has_text="learning_rate")).to_contain_text(str(config["learning_rate"]))
        expect(table.locator("tr", has_text="lr_scheduler.type")).to_contain_text(config["lr_scheduler"]["type"])
        section.scroll_into_view_if_needed()
        self.shot("model-training")
        # A credited person's page lists the models that credit them, with the role.
        section.get_by_test_id("training-credits").get_by_role("link", name="alice").click()
        expect(self.page).to_have_url(re.compile(r"/actors/alice$"))
        mine = self.page.get_by_test_id("credits")
        expect(mine).to_contain_text("Credited on")
        row = mine.locator("tr", has_text="dave/verse-instruct")
        expect(row).to_contain_text("evaluator")
        expect(mine).to_contain_text("not payment")
        mine.scroll_into_view_if_needed()
        self.shot("actor-credits")
        row.get_by_role("link", name="dave/verse-instruct").click()
        expect(self.page).to_have_url(re.compile(r"/models/dave/verse-instruct$"))
        # carol-lab is credited as the framework's author.
        self.page.goto("/actors/carol-lab")
        expect(self.page.get_by_test_id("credits").locator("tr", has_text="dave/verse-instruct")).to_contain_text(
            "framework author")

    def test_record_page_verifies_its_inclusion_proof(self):
        ds = self.api("/api/datasets/carol-lab/public-domain-verse").json()
        index = ds["contributions"][0]
        self.page.goto(f"/records/{index}")
        expect(self.page.get_by_test_id("record-kind")).to_have_text("data.contribute")
        expect(self.page.get_by_test_id("contribution")).to_contain_text("carol-lab/public-domain-verse")
        self.expect_proof_verified()
        self.shot("record-contribution")
        # The check is real: one changed byte in the record fails it.
        original = self.api(f"/api/records/{index}").body()
        tampered = original.replace(b'"ts_ms":', b'"ts_ms": ', 1)
        self.assertNotEqual(original, tampered)
        self.page.route(f"**/api/records/{index}", lambda route: route.fulfill(
            status=200, body=tampered, headers={"content-type": "application/json"}))
        self.page.goto(f"/records/{index}")
        expect(self.page.get_by_test_id("proof")).to_have_attribute("data-state", "failed", timeout=15000)
        expect(self.page.get_by_test_id("proof-status")).to_contain_text("NOT verified")
        self.shot("record-tampered")

    # -- the checkpoint's signatures, checked in the browser ------------------------------------

    def log_vkey(self):
        with open(os.path.join(self.tmp.name, "ledger", "log.pub")) as f:
            return f.read().strip()

    def witnessed(self, note, witnesses, quorum, log_vkey=None):
        """Serve `note` as /log/checkpoint and a policy of `witnesses` and `quorum` as
        /api/witnesses (routes the server under test does not have)."""
        policy = {"log_vkey": log_vkey or self.log_vkey(), "quorum": quorum,
                  "witnesses": [{"name": w.name, "vkey": w.vkey(), "url": f"https://{w.name}/"} for w in witnesses]}
        self.page.route("**/api/witnesses", lambda route: route.fulfill(
            status=200, body=json.dumps(policy), headers={"content-type": "application/json"}))
        self.page.route("**/log/checkpoint", lambda route: route.fulfill(
            status=200, body=note, headers={"content-type": "text/plain; charset=utf-8"}))

    def expect_checkpoint(self, state):
        box = self.page.locator("#checkpoint-verify")
        expect(box).to_have_attribute("data-state", state, timeout=15000)
        return box

    def contribution_index(self):
        return self.api("/api/datasets/carol-lab/public-domain-verse").json()["contributions"][0]

    def expect_proof_not_verified(self, text):
        expect(self.page.get_by_test_id("proof")).to_have_attribute("data-state", "failed", timeout=15000)
        status = self.page.get_by_test_id("proof-status")
        expect(status).to_contain_text("NOT verified")
        expect(status).to_contain_text(text)
        expect(status).not_to_contain_text("Verified against")

    def test_checkpoint_log_signature_verifies_without_a_witness_policy(self):
        # This server has no witness policy: /api/witnesses names none, /log/checkpoint is the
        # log-signed note.
        policy = self.api("/api/witnesses").json()
        self.assertEqual((policy["quorum"], policy["witnesses"]), (0, []))
        self.assertEqual(policy["log_vkey"], self.log_vkey())
        vkey = self.log_vkey()
        self.page.goto("/")
        box = self.expect_checkpoint("verified")
        expect(box).to_have_attribute("data-log-vkey", vkey)
        expect(box.get_by_test_id("log-vkey")).to_have_text(vkey)
        size, root = self.checkpoint()
        sig = box.get_by_test_id("log-signature")
        expect(sig).to_have_attribute("data-state", "verified")
        expect(sig).to_contain_text(f"✓ Log signature verified with {vkey}")
        expect(sig).to_contain_text(f"root {root}")
        expect(sig).to_contain_text("/log/checkpoint")
        expect(box.get_by_test_id("witness-quorum")).to_have_attribute("data-state", "none")
        expect(box.get_by_test_id("witness-quorum")).to_contain_text("No witness policy")
        self.shot("checkpoint-log-signature")
        self.page.goto(f"/records/{self.contribution_index()}")
        self.expect_proof_verified()
        expect(self.page.get_by_test_id("proof-status")).to_contain_text("no witness policy")

    def test_checkpoint_cosigned_by_a_quorum_of_witnesses(self):
        note = self.api("/api/checkpoint").body()
        w1, w2, w3, stranger = (Witness(n) for n in ["w1.example", "w2.example", "w3.example", "stranger.example"])
        cosigned = note + w1.cosign(note) + w2.cosign(note) + stranger.cosign(note)
        self.witnessed(cosigned, [w1, w2, w3], 2)
        self.page.goto("/")
        box = self.expect_checkpoint("verified")
        expect(box.get_by_test_id("log-signature")).to_contain_text("✓ Log signature verified")
        expect(box.get_by_test_id("log-signature")).to_contain_text("/log/checkpoint")
        quorum = box.get_by_test_id("witness-quorum")
        expect(quorum).to_have_attribute("data-state", "verified")
        expect(quorum).to_have_text("✓ cosigned by 2 of 3 witnesses (quorum 2).")
        expect(box.get_by_test_id("witness")).to_have_count(4)
        for name, status in [("w1.example", "cosigned"), ("w2.example", "cosigned"), ("w3.example", "absent"),
                             ("stranger.example", "not-in-policy")]:
            expect(box.locator(f'[data-testid=witness][data-name="{name}"]')).to_have_attribute("data-status", status)
        expect(box.locator('[data-name="stranger.example"]')).to_contain_text("not in policy")
        expect(box.get_by_test_id("checkpoint-status")).to_contain_text("✓ Checkpoint verified")
        self.shot("checkpoint-witnessed")
        # The record page checks its proof against that checkpoint.
        self.page.goto(f"/records/{self.contribution_index()}")
        self.expect_proof_verified()
        expect(self.page.get_by_test_id("proof-status")).to_contain_text("2 of 3 witnesses ✓")

    def test_a_forged_cosignature_fails_the_checkpoint(self):
        note = self.api("/api/checkpoint").body()
        w1, w2, w3 = (Witness(n) for n in ["w1.example", "w2.example", "w3.example"])
        impostor = Ed25519PrivateKey.generate()
        forgeries = {
            # Signed by another key under w2's name and key id.
            "other-key": w2.cosign(note, key=impostor),
            # w2's real cosignature with one bit flipped.
            "flipped-bit": flip_last_signature_byte(w2.cosign(note)),
            # w2's real signature, but claiming another time than the one it signed.
            "other-time": self.retimed(w2, note),
        }
        for what, forged in forgeries.items():
            with self.subTest(what):
                self.page.unroute("**/api/witnesses")
                self.page.unroute("**/log/checkpoint")
                # Three lines from policy witnesses, two of them valid: the quorum alone would
                # be met, but a forgery under a policy witness's name fails the checkpoint.
                self.witnessed(note + w1.cosign(note) + forged + w3.cosign(note), [w1, w2, w3], 2)
                self.page.goto("/")
                box = self.expect_checkpoint("failed")
                expect(box.get_by_test_id("log-signature")).to_have_attribute("data-state", "verified")
                quorum = box.get_by_test_id("witness-quorum")
                expect(quorum).to_have_attribute("data-state", "failed")
                expect(quorum).to_contain_text("FORGED cosignature from w2.example")
                expect(box.locator('[data-name="w2.example"]')).to_have_attribute("data-status", "forged")
                expect(box.locator('[data-name="w1.example"]')).to_have_attribute("data-status", "cosigned")
                expect(box.get_by_test_id("checkpoint-status")).to_contain_text("NOT verified")
                self.shot(f"checkpoint-forged-{what}")
                self.page.goto(f"/records/{self.contribution_index()}")
                self.expect_proof_not_verified("witness policy")

    def retimed(self, witness, note):
        """`witness`'s valid cosignature at time 1000, relabelled as made at time 1001."""
        line = witness.cosign(note, timestamp=1000)
        head, sig = line.rstrip(b"\n").rsplit(b" ", 1)
        raw = bytearray(base64.b64decode(sig))
        raw[4:12] = (1001).to_bytes(8, "big")
        return head + b" " + b64(bytes(raw)).encode() + b"\n"

    def test_too_few_cosignatures_miss_the_quorum(self):
        note = self.api("/api/checkpoint").body()
        w1, w2, w3 = (Witness(n) for n in ["w1.example", "w2.example", "w3.example"])
        # w1 twice counts once.
        self.witnessed(note + w1.cosign(note) + w1.cosign(note, timestamp=12345), [w1, w2, w3], 2)
        self.page.goto("/")
        box = self.expect_checkpoint("failed")
        expect(box.get_by_test_id("log-signature")).to_have_attribute("data-state", "verified")
        quorum = box.get_by_test_id("witness-quorum")
        expect(quorum).to_have_attribute("data-state", "failed")
        expect(quorum).to_have_text("✗ cosigned by 1 of 3 witnesses (quorum 2): quorum not met.")
        self.shot("checkpoint-quorum-not-met")
        self.page.goto(f"/records/{self.contribution_index()}")
        self.expect_proof_not_verified("witness policy")

    def test_a_bad_log_signature_fails_the_checkpoint_and_the_proof(self):
        note = self.api("/api/checkpoint").body()
        text = note_text(note)
        log_line = note[len(text) + 1:]
        self.assertEqual(log_line.count(b"\n"), 1, "the server's note has one signature")
        w1, w2 = Witness("w1.example"), Witness("w2.example")
        size = int(text.split(b"\n")[1])
        cases = {
            # One bit of the log's signature flipped; both witnesses cosigned the text.
            "flipped-bit": (text + b"\n" + flip_last_signature_byte(log_line), "does NOT verify"),
            # A bigger tree than the log signed, under the log's signature of the real one.
            "other-text": (text.replace(f"\n{size}\n".encode(), f"\n{size + 1}\n".encode(), 1)
                           + b"\n" + log_line, "does NOT verify"),
        }
        for what, (bad, why) in cases.items():
            with self.subTest(what):
                self.page.unroute("**/api/witnesses")
                self.page.unroute("**/log/checkpoint")
                self.witnessed(bad + w1.cosign(bad) + w2.cosign(bad), [w1, w2], 2)
                self.page.goto("/")
                box = self.expect_checkpoint("failed")
                sig = box.get_by_test_id("log-signature")
                expect(sig).to_have_attribute("data-state", "failed")
                expect(sig).to_contain_text(why)
                expect(box.get_by_test_id("checkpoint-status")).to_contain_text("NOT verified")
                self.shot(f"checkpoint-bad-log-signature-{what}")
                self.page.goto(f"/records/{self.contribution_index()}")
                self.expect_proof_not_verified("log signature does not verify")
        # A malformed note, and a policy naming another log key than the page: refused.
        for what, (bad, vkey, why) in {
            "no-blank-line": (text + log_line, None, "malformed"),
            "size-with-sign": (text.replace(f"\n{size}\n".encode(), f"\n+{size}\n".encode(), 1) + b"\n" + log_line,
                               None, "malformed"),
            "other-log-key": (note, "other.example/log+" + "0" * 8 + "+" + b64(bytes(33)), "two log keys"),
        }.items():
            with self.subTest(what):
                self.page.unroute("**/api/witnesses")
                self.page.unroute("**/log/checkpoint")
                self.witnessed(bad, [], 0, log_vkey=vkey)
                self.page.goto("/")
                box = self.expect_checkpoint("failed")
                expect(box.get_by_test_id("checkpoint-status")).to_contain_text(why)
                self.page.goto(f"/records/{self.contribution_index()}")
                self.expect_proof_not_verified("could not be checked")

    def test_a_browser_without_ed25519_is_told_so(self):
        # Make WebCrypto refuse Ed25519, as browsers before Chromium 137 do.
        self.page.add_init_script("""
            const importKey = crypto.subtle.importKey.bind(crypto.subtle);
            crypto.subtle.importKey = (format, key, alg, ...rest) =>
              (alg === "Ed25519" || (alg && alg.name === "Ed25519"))
                ? Promise.reject(new DOMException("Unrecognized algorithm name", "NotSupportedError"))
                : importKey(format, key, alg, ...rest);
        """)
        self.page.goto("/")
        box = self.expect_checkpoint("failed")
        expect(box.get_by_test_id("log-signature")).to_contain_text("has no Ed25519")
        self.page.goto(f"/records/{self.contribution_index()}")
        self.expect_proof_not_verified("could not be checked")

    def test_try_it_highlights_attributed_spans(self):
        size_before, _ = self.checkpoint()
        self.page.goto("/")
        self.page.get_by_test_id("try-model").select_option("carol-lab/verse-base")
        expect(self.page.get_by_test_id("try-use")).to_have_value("commercial")
        self.page.get_by_test_id("try-prompt").fill("Shall I compare thee")
        self.page.get_by_test_id("try-submit").click()
        out = self.page.get_by_test_id("try-output")
        expect(out).to_have_attribute("data-state", "done", timeout=30000)
        marks = self.page.get_by_test_id("attributed-span")
        self.assertGreater(marks.count(), 0, out.inner_text())
        # Each highlighted span really occurs in the dataset, and links to a contribution of it.
        contributions = set(self.api("/api/datasets/carol-lab/public-domain-verse").json()["contributions"])
        # /api/attribute needs an API key (the demo's payer's) and allows 1 call/s per key
        # after a burst of 5: wait out a 429.
        with open(os.path.join(self.tmp.name, "ledger", "demo-api-key.txt")) as f:
            key = f.read().strip()
        for text in marks.all_inner_texts():
            for _ in range(10):
                resp = self.page.request.post(self.base + "/api/attribute", data={
                    "dataset_id": "carol-lab/public-domain-verse", "text": text},
                    headers={"authorization": f"Bearer {key}"})
                if resp.status != 429:
                    break
                time.sleep(1.1)
            self.assertTrue(resp.ok, resp.text())
            self.assertTrue(any(s["text"] == text for s in resp.json()["spans"]), text)
        links = self.page.get_by_test_id("span-source")
        self.assertGreater(links.count(), 0)
        for href in [links.nth(i).get_attribute("href") for i in range(links.count())]:
            self.assertIn(int(href.rsplit("/", 1)[1]), contributions)
        self.shot("try-it")
        # The call was metered: its receipt is a new record, whose page verifies.
        self.assertEqual(self.checkpoint()[0], size_before + 1)
        self.page.get_by_test_id("try-receipt").click()
        expect(self.page.get_by_test_id("record-kind")).to_have_text("usage.receipt")
        expect(self.page.locator("main")).to_contain_text("paid by erin")
        self.expect_proof_verified()
        # A source link opens the contribution it credits.
        self.page.go_back()
        self.page.goto("/")
        self.page.get_by_test_id("try-model").select_option("dave/verse-instruct")
        expect(self.page.get_by_test_id("try-use")).to_have_value("research")
        self.page.get_by_test_id("try-use").select_option("commercial")
        self.page.get_by_test_id("try-submit").click()
        expect(self.page.get_by_test_id("try-error")).to_contain_text("E_LICENSE_DENIED", timeout=30000)
        self.shot("try-it-denied")
        self.assertEqual(self.checkpoint()[0], size_before + 1, "a refused call writes nothing")

    def test_unknown_pages_are_404(self):
        for path in ["/models/nobody/nothing", "/actors/nobody", "/records/999999", "/datasets/a/b", "/disputes/999999"]:
            resp = self.page.goto(path)
            self.assertEqual(resp.status, 404, path)
            expect(self.page.get_by_test_id("error")).to_be_visible()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RealWitnessesTest(unittest.TestCase):
    """End to end, nothing intercepted: two `shoulders witness serve` processes cosign the demo
    log's checkpoints for `shoulders serve --witness-policy` (quorum 2), and the browser checks
    the served note with the Rust witnesses' keys."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.procs = []
        sh = ARGS.shoulders
        data = os.path.join(cls.tmp.name, "ledger")
        subprocess.run([sh, "demo", "--data-dir", data, "--no-serve"], check=True, capture_output=True)
        log_pub = os.path.join(data, "log.pub")
        lines = []
        for i in range(2):
            wdir = os.path.join(cls.tmp.name, f"w{i}")
            subprocess.run([sh, "witness", "init", "--dir", wdir, "--name", f"w{i}.e2e.example"],
                           check=True, capture_output=True)
            vkey = subprocess.run([sh, "witness", "key", "--dir", wdir], check=True,
                                  capture_output=True, text=True).stdout.strip()
            port = free_port()
            cls.procs.append(subprocess.Popen(
                [sh, "witness", "serve", "--dir", wdir, "--listen", f"127.0.0.1:{port}", "--log", log_pub],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            lines.append(f"witness {vkey} http://127.0.0.1:{port}")
        policy = os.path.join(cls.tmp.name, "witnesses.policy")
        with open(policy, "w") as f:
            f.write("\n".join(lines) + "\nquorum 2\n")
        port = free_port()
        cls.base = f"http://127.0.0.1:{port}"
        cls.procs.append(subprocess.Popen(
            [sh, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--witness-policy", policy],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(cls.base + "/log/checkpoint", timeout=5) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            if time.time() > deadline:
                raise RuntimeError("no cosigned checkpoint within 60 s")
            time.sleep(0.2)
        cls.pw = sync_playwright().start()
        cls.browser = cls.pw.chromium.launch(
            executable_path=ARGS.chromium, headless=True, args=["--no-sandbox"])

    @classmethod
    def tearDownClass(cls):
        cls.browser.close()
        cls.pw.stop()
        for p in cls.procs:
            p.terminate()
            p.wait(timeout=30)
        cls.tmp.cleanup()

    def test_the_browser_verifies_real_cosignatures(self):
        context = self.browser.new_context(base_url=self.base)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto("/")
        box = page.locator("#checkpoint-verify")
        expect(box).to_have_attribute("data-state", "verified", timeout=15000)
        expect(box.get_by_test_id("witness-quorum")).to_contain_text("cosigned by 2 of 2 witnesses (quorum 2)")
        page.screenshot(path=str(SHOTS / "checkpoint-real-witnesses.png"), full_page=True)
        context.close()
        self.assertEqual(errors, [])


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--shoulders", required=True, help="path to the shoulders binary")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
