"""The official `openai` Python client against `shoulders serve`, unchanged but for base_url.

Seeds a ledger with `shoulders demo` (actors, licences, the public-domain verse dataset and its
attribution index, a base model and fine-tunes), issues an API key for the payer, starts the
server on a free port and calls the gateway with and without streaming.

Usage: python test_openai_gateway.py --shoulders target/debug/shoulders
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import openai

SHOULDERS = None
BASE_MODEL = "carol-lab/verse-base"
NC_MODEL = "dave/verse-instruct"


class Server:
    def __init__(self, shoulders):
        self.tmp = tempfile.TemporaryDirectory()
        self.data_dir = os.path.join(self.tmp.name, "ledger")
        subprocess.run([shoulders, "demo", "--no-serve", "--data-dir", self.data_dir], check=True,
                       stdout=subprocess.DEVNULL)
        # erin is the demo's paying customer (the demo deposits 100 USD for her).
        out = subprocess.run([shoulders, "apikey", "new", "--data-dir", self.data_dir,
                              "--actor", "erin"], check=True, capture_output=True, text=True)
        self.api_key = json.loads(out.stdout)["api_key"]
        # Metering on: every call appends a usage receipt signed with the operator key.
        self.proc = subprocess.Popen(
            [shoulders, "serve", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0",
             "--metering", "on"], stdout=subprocess.PIPE, text=True)
        text = ""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("shoulders serve exited before listening")
            text += line
            try:
                self.info = json.loads(text)
                break
            except json.JSONDecodeError:
                continue
        self.base_url = self.info["listening"] + "/v1"

    def get_json(self, path):
        with urllib.request.urlopen(self.info["listening"] + path, timeout=30) as r:
            return json.loads(r.read())

    def balance(self, account, currency="USD"):
        for a in self.get_json("/api/accounts")["accounts"]:
            if a["account"] == account and a["currency"] == currency:
                return int(a["balance_micros"])
        return 0

    def stop(self):
        self.proc.terminate()
        code = self.proc.wait(timeout=30)
        self.tmp.cleanup()
        return code


class GatewayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(SHOULDERS)
        cls.client = openai.OpenAI(base_url=cls.server.base_url, api_key=cls.server.api_key)

    @classmethod
    def tearDownClass(cls):
        # SIGTERM: graceful shutdown, exit status 0.
        assert cls.server.stop() == 0

    def check_attribution(self, text, shoulders):
        self.assertEqual(shoulders["source"], "embedded-infini-gram")
        self.assertEqual(shoulders["payer"], "erin")
        att = shoulders["attribution"]
        self.assertEqual(att["dataset_id"], "carol-lab/public-domain-verse")
        self.assertEqual(sum(att["shares"]["contributors_ppm"].values()), 1_000_000)
        self.assertTrue(att["spans"], "the embedded model copies contributed text")
        for span in att["spans"]:
            self.assertEqual(text.encode()[span["start"]:span["end"]].decode(), span["text"])
            self.assertTrue(span["contributions"])
        # Metered: a durable receipt, charged at the licence price (per call + per 1k output
        # tokens, rounded up), never at a price the receipt names.
        self.assertEqual(shoulders["metering"], "on")
        receipt = shoulders["receipt"]
        self.assertIsNotNone(receipt)
        price = shoulders["price"]
        self.assertEqual(price["per_call_micros"], 1000)
        tokens = len(text.encode())
        expected = price["per_call_micros"] + -(-tokens * price["per_1k_output_tokens_micros"] // 1000)
        self.assertEqual(int(receipt["charge_micros"]), expected)
        record = self.server.get_json("/api/records/%d" % receipt["index"])
        self.assertEqual(record["kind"], "usage.receipt")
        self.assertEqual(record["body"]["payer"], "erin")
        return expected

    def test_a_call_charges_the_payer_the_licence_price(self):
        before = self.server.balance("erin")
        resp = self.client.chat.completions.create(
            model=BASE_MODEL, max_tokens=80, seed=5,
            messages=[{"role": "user", "content": "A thing of beauty"}])
        text = resp.choices[0].message.content
        charge = self.check_attribution(text, resp.model_extra["shoulders"])
        self.assertGreater(charge, 0)
        self.assertEqual(self.server.balance("erin"), before - charge)
        # The books still balance, and erin's statement shows the charge with its usage id.
        self.assertTrue(self.server.get_json("/api/accounts")["conserved"])
        # Statements are paged (oldest first): follow the `next` cursors to the end.
        lines, cursor = [], None
        while True:
            page = self.server.get_json("/api/statements/erin?limit=1000"
                                        + ("&cursor=" + cursor if cursor else ""))
            lines += page["lines"]
            cursor = page.get("next")
            if not cursor:
                break
        usage_id = resp.model_extra["shoulders"]["receipt"]["usage_id"]
        self.assertTrue(any(l.get("usage_id") == usage_id and int(l["amount_micros"]) == -charge
                            for l in lines))

    def test_models(self):
        ids = [m.id for m in self.client.models.list()]
        self.assertIn(BASE_MODEL, ids)
        self.assertIn(NC_MODEL, ids)

    def test_chat_non_streaming_and_streaming_agree(self):
        kwargs = dict(model=BASE_MODEL, max_tokens=120, seed=11,
                      messages=[{"role": "user", "content": "Shall I compare thee"}])
        resp = self.client.chat.completions.create(**kwargs)
        text = resp.choices[0].message.content
        self.assertTrue(text)
        self.assertIn(resp.choices[0].finish_reason, ("stop", "length"))
        self.assertEqual(resp.usage.completion_tokens, len(text.encode()))
        self.check_attribution(text, resp.model_extra["shoulders"])

        stream = self.client.chat.completions.create(stream=True, **kwargs)
        parts, last = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            last = chunk
        self.assertGreater(len(parts), 1)
        self.assertEqual("".join(parts), text)
        self.assertEqual(last.choices[0].finish_reason, resp.choices[0].finish_reason)
        self.check_attribution(text, last.model_extra["shoulders"])

    def test_completions_non_streaming_and_streaming(self):
        kwargs = dict(model=BASE_MODEL, prompt="The woods are", max_tokens=60, seed=2)
        resp = self.client.completions.create(**kwargs)
        text = resp.choices[0].text
        self.assertTrue(text)
        self.check_attribution(text, resp.model_extra["shoulders"])
        streamed = "".join(c.choices[0].text for c in
                           self.client.completions.create(stream=True, **kwargs) if c.choices)
        self.assertEqual(streamed, text)

    def test_licence_denied_is_a_permission_error(self):
        with self.assertRaises(openai.PermissionDeniedError) as ctx:
            self.client.chat.completions.create(
                model=NC_MODEL, messages=[{"role": "user", "content": "hi"}])
        # The client unwraps our {"error": {...}} body.
        self.assertEqual(ctx.exception.body["code"], "E_LICENSE_DENIED")
        # Non-commercial use of the same model is allowed (extra body field `use`).
        resp = self.client.chat.completions.create(
            model=NC_MODEL, messages=[{"role": "user", "content": "Thou art"}],
            extra_body={"use": "research"}, max_tokens=30)
        self.assertEqual(resp.model_extra["shoulders"]["use"], "research")

    def test_unknown_key_and_model(self):
        bad = openai.OpenAI(base_url=self.server.base_url, api_key="sk-shoulders-wrong")
        with self.assertRaises(openai.AuthenticationError):
            bad.completions.create(model=BASE_MODEL, prompt="x")
        with self.assertRaises(openai.NotFoundError):
            self.client.completions.create(model="nobody/none", prompt="x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--shoulders", required=True)
    args, rest = parser.parse_known_args()
    SHOULDERS = os.path.abspath(args.shoulders)
    unittest.main(argv=[sys.argv[0], "-v"] + rest)
