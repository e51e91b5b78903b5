"""The client against a live ``shoulders serve`` (seeded by ``shoulders demo``): registering an
actor and contributing, statements whose every line is proved against the signed checkpoint,
attribution of a quoted passage, and the server's error codes surfacing as exceptions."""

import base64
import json
import os
import re
import socket
import unittest

from _server import REPO_ROOT, Server, run
from shoulders_client import (ActorKey, ApiError, Client, ShouldersError, content_hash, leaf_hash,
                              sign_record, verify_inclusion)
from shoulders_client import client as client_module

SERVER = None


def setUpModule():
    global SERVER
    SERVER = Server()


def tearDownModule():
    # SIGTERM: a graceful stop exits 0.
    assert SERVER.stop() == 0, SERVER.stderr_text()


def get_json(client, path):
    return json.loads(client._request("GET", path))


class Contributing(unittest.TestCase):
    def setUp(self):
        self.client = Client(SERVER.url, api_key=SERVER.api_key)

    def test_register_create_contribute_and_attribute_a_quote(self):
        key = ActorKey.generate()
        handle = "py" + key.public_key_b64().lower().translate({ord(c): None for c in "+/="})[:12]
        appended = self.client.register_actor(key, handle, "Py Contributor")
        self.assertFalse(appended["duplicate"])
        actor = get_json(self.client, f"/api/actors/{handle}")
        self.assertEqual((actor["handle"], actor["public_key"]), (handle, key.public_key_b64()))
        dataset = f"{handle}/notes"
        self.client.create_dataset(key, dataset, "Field notes", description="kept by a test")
        doc = ("Herons stand in the shallows of the millpond at first light, "
               f"counting minnows for {handle}.\nThen the mist lifts.\n")
        done = self.client.contribute(key, dataset, doc, title="herons")
        self.assertEqual(done["content_hash"], content_hash(doc.encode()))
        self.assertFalse(done["duplicate"])
        contribution = get_json(self.client, f"/api/contributions/{done['index']}")
        self.assertEqual(contribution["contributor"], handle, contribution)
        self.assertEqual(contribution["byte_size"], len(doc.encode()))
        # The stored record is the one signed here, byte for byte: its hash is the leaf.
        stored = self.client.record(done["index"])
        self.assertEqual(base64.b64encode(leaf_hash(stored)).decode(), done["leaf_hash"])
        self.assertEqual(json.loads(stored)["signer"], key.public_key_b64())

        cp = self.client.checkpoint(SERVER.verifier_key)
        self.assertEqual(self.client.prove_record(done["index"], cp), stored)
        # Any kind through the low-level door: a payout address, and the actor shows it.
        self.client.sign_and_submit(key, "actor.update", {"payout_address": f"iban:{handle}"})
        self.assertEqual(get_json(self.client, f"/api/actors/{handle}")["payout_address"],
                         f"iban:{handle}")

        # Index the dataset (a reader beside the running writer) and attribute a quote of it.
        run("index", "build", "--data-dir", SERVER.data_dir, dataset)
        quote = "She wrote: the shallows of the millpond at first light, counting minnows."
        report = self.client.attribute(dataset, quote)
        self.assertEqual(report["dataset_id"], dataset)
        self.assertEqual(report["shares"]["contributors_ppm"], {handle: 1_000_000})
        self.assertTrue(report["spans"])
        for span in report["spans"]:
            self.assertEqual(quote.encode()[span["start"]:span["end"]].decode(), span["text"])
            self.assertIn(span["text"], doc)
            self.assertEqual([c["contributor"] for c in span["contributions"]], [handle])
        # A text that quotes nothing credits nobody.
        self.assertEqual(self.client.attribute(dataset, "zzzz qqqq xxxx")["spans"], [])

    def test_a_record_signed_here_is_stored_as_signed_and_resubmission_is_idempotent(self):
        key = ActorKey.generate()
        handle = "pz" + os.urandom(6).hex()
        record = sign_record(key, self.client.origin(), "actor.register",
                             {"handle": handle, "name": "Idempotent"}, "reg-1")
        first = self.client.submit(record)
        self.assertEqual(self.client.record(first["index"]), record)
        again = self.client.submit(record)
        self.assertEqual((again["index"], again["duplicate"]), (first["index"], True))


class Statements(unittest.TestCase):
    def setUp(self):
        self.client = Client(SERVER.url)

    def test_every_line_of_a_statement_is_proved(self):
        # alice's poems were quoted by the demo's metered calls: she has many lines.
        cursor, pages, indexes = None, 0, set()
        while True:
            page = self.client.verified_statement("alice", SERVER.verifier_key, limit=25,
                                                  cursor=cursor)
            lines = page.statement["lines"]
            self.assertTrue(lines)
            self.assertEqual(set(page.proved), {line["index"] for line in lines})
            for line in lines:
                self.assertEqual(line["account"], "alice")
            indexes |= set(page.proved)
            pages += 1
            cursor = page.next
            if cursor is None:
                break
        self.assertGreater(pages, 1)
        cp = self.client.checkpoint(SERVER.verifier_key)
        self.assertTrue(all(i < cp.size for i in indexes))
        # The page's totals agree with the proved lines (one page holds them all).
        whole = self.client.statement("alice", limit=1000)
        credits = sum(int(l["amount_micros"]) for l in whole["lines"] if int(l["amount_micros"]) > 0)
        self.assertEqual(credits, int(whole["totals"][0]["credits_micros"]))

    def test_a_tampered_proof_fails(self):
        client = Client(SERVER.url)
        real = client.inclusion_proof

        def tampered(index, size):
            proof = real(index, size)
            h = bytearray(base64.b64decode(proof["hashes"][0]))
            h[7] ^= 0x20
            proof["hashes"][0] = base64.b64encode(bytes(h)).decode()
            return proof

        client.inclusion_proof = tampered
        with self.assertRaises(ShouldersError) as e:
            client.verified_statement("alice", SERVER.verifier_key, limit=5)
        self.assertEqual(e.exception.code, "E_PROOF_INVALID")

        # The same proof, untouched, verifies; with a bit of it flipped it does not.
        cp = self.client.checkpoint(SERVER.verifier_key)
        index = self.client.statement("alice", limit=1)["lines"][0]["index"]
        proof = [base64.b64decode(h) for h in real(index, cp.size)["hashes"]]
        leaf = leaf_hash(self.client.record(index))
        verify_inclusion(leaf, index, cp.size, proof, cp.root)
        proof[-1] = bytes([proof[-1][0] ^ 1]) + proof[-1][1:]
        with self.assertRaises(ShouldersError) as e:
            verify_inclusion(leaf, index, cp.size, proof, cp.root)
        self.assertEqual(e.exception.code, "E_PROOF_INVALID")

    def test_a_tampered_record_or_cause_or_checkpoint_key_fails(self):
        client = Client(SERVER.url)
        real_record, real_statement = client.record, client.statement
        client.record = lambda index: real_record(index).replace(b'"ts_ms":', b'"ts_ms": ')
        with self.assertRaises(ShouldersError) as e:
            client.verified_statement("alice", SERVER.verifier_key, limit=5)
        self.assertEqual(e.exception.code, "E_PROOF_INVALID")

        client.record = real_record

        def renamed(*args, **kwargs):
            page = real_statement(*args, **kwargs)
            for line in page["lines"]:
                if "usage_id" in line:
                    line["usage_id"] += "-not-this-one"
            return page

        client.statement = renamed
        with self.assertRaises(ShouldersError) as e:
            client.verified_statement("alice", SERVER.verifier_key, limit=5)
        self.assertEqual(e.exception.code, "E_STATEMENT_MISMATCH")

        client.statement = real_statement
        other_key = run("init", "--data-dir", os.path.join(SERVER.tmp.name, "other"),
                        "--origin", self.client.origin()).strip()
        with self.assertRaises(ShouldersError) as e:
            client.verified_statement("alice", other_key, limit=5)
        self.assertEqual(e.exception.code, "E_CHECKPOINT_SIGNATURE")


class Errors(unittest.TestCase):
    def setUp(self):
        self.client = Client(SERVER.url, api_key=SERVER.api_key)

    def assertCode(self, code, status, fn, *args, **kwargs):
        with self.assertRaises(ApiError) as e:
            fn(*args, **kwargs)
        self.assertEqual((e.exception.code, e.exception.status), (code, status), e.exception.message)
        self.assertTrue(e.exception.message)
        return e.exception

    def test_server_refusals_carry_their_stable_codes_and_append_nothing(self):
        before = self.client.checkpoint(SERVER.verifier_key).size
        # alice is the demo's: her handle is taken.
        err = self.assertCode("E_HANDLE_TAKEN", 422, self.client.register_actor,
                              ActorKey.generate(), "alice", "Not Alice")
        self.assertIn("alice", err.message)
        self.assertCode("E_SIGNER_UNKNOWN", 422, self.client.create_dataset,
                        ActorKey.generate(), "nobody/x", "X")
        self.assertCode("E_WRONG_LEDGER", 422, self.client.submit, sign_record(
            ActorKey.generate(), "another.example/log", "actor.register",
            {"handle": "wrongledger", "name": "W"}))
        self.assertCode("E_RECORD_NOT_CANONICAL", 400, self.client.submit,
                        sign_record(ActorKey.generate(), self.client.origin(), "dataset.create",
                                    {"dataset_id": "x/y", "name": "N", "access": "open",
                                     "allowlist": []}))
        self.assertCode("E_NOT_FOUND", 404, self.client.record, 10**9)
        self.assertCode("E_UNAUTHORIZED", 401, Client(SERVER.url).attribute,
                        "carol-lab/public-domain-verse", "Shall I compare thee")
        self.assertCode("E_PAGE_TOO_LARGE", 400, self.client._json, "GET",
                        "/api/statements/alice?limit=0")
        self.assertEqual(self.client.checkpoint(SERVER.verifier_key).size, before)

    def test_client_side_refusals_send_nothing(self):
        before = self.client.checkpoint(SERVER.verifier_key).size
        key = ActorKey.generate()
        for call, code in ((lambda: self.client.contribute(key, "a/b", ""), "E_FIELD_INVALID"),
                           (lambda: self.client.contribute(key, "a/b", b"\xff"), "E_CONTENT_NOT_UTF8"),
                           (lambda: self.client.contribute(key, "a/b", "\ud800"), "E_CONTENT_NOT_UTF8"),
                           (lambda: self.client.contribute(key, "a/b", 5), "E_FIELD_INVALID"),
                           (lambda: self.client.attribute("a/b", b"bytes"), "E_FIELD_INVALID"),
                           (lambda: self.client.attribute("a/b", ""), "E_TEXT_EMPTY"),
                           (lambda: self.client.attribute("a/b", "x" * (1 << 20 | 1)), "E_TEXT_TOO_LARGE"),
                           (lambda: self.client.statement("alice", limit=1001), "E_PAGE_TOO_LARGE")):
            with self.assertRaises(ShouldersError) as e:
                call()
            self.assertEqual(e.exception.code, code)
            self.assertNotIsInstance(e.exception, ApiError)
        # The document limit (1 GiB), lowered here so the test need not hold a gigabyte.
        limit = client_module.MAX_CONTENT_BYTES
        client_module.MAX_CONTENT_BYTES = 4
        try:
            with self.assertRaises(ShouldersError) as e:
                self.client.contribute(key, "a/b", "12345")
            self.assertEqual(e.exception.code, "E_CONTENT_TOO_LARGE")
        finally:
            client_module.MAX_CONTENT_BYTES = limit
        self.assertEqual(self.client.checkpoint(SERVER.verifier_key).size, before)

    def test_an_unreachable_server_and_an_oversized_answer(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with self.assertRaises(ShouldersError) as e:
            Client(f"http://127.0.0.1:{port}", timeout_ms=2000).checkpoint_note()
        self.assertEqual(e.exception.code, "E_CLIENT_TRANSPORT")
        with self.assertRaises(ShouldersError) as e:
            Client(SERVER.url, max_response_bytes=64).statement("alice")
        self.assertEqual(e.exception.code, "E_CLIENT_RESPONSE")


class Docs(unittest.TestCase):
    def test_every_code_the_client_raises_is_in_architecture_md(self):
        with open(os.path.join(REPO_ROOT, "ARCHITECTURE.md"), encoding="utf-8") as f:
            doc = f.read()
        src = os.path.join(REPO_ROOT, "clients", "python", "src", "shoulders_client")
        codes = set()
        for name in os.listdir(src):
            if name.endswith(".py"):
                with open(os.path.join(src, name), encoding="utf-8") as f:
                    codes |= set(re.findall(r'"(E_[A-Z_]+)"', f.read()))
        self.assertGreater(len(codes), 10)
        self.assertEqual(sorted(c for c in codes if f"`{c}`" not in doc), [])


if __name__ == "__main__":
    unittest.main()
