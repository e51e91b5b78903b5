"""Keys and record signing, byte for byte against the Rust implementation: the record crate's
golden file, and ``shoulders sign`` / ``shoulders key new`` run as processes."""

import json
import os
import stat
import tempfile
import unittest

from _server import REPO_ROOT, run
from shoulders_client import (MAX_RECORD_BYTES, MAX_SAFE_INTEGER, ActorKey, ShouldersError,
                              canonical_json, sign_record, signing_payload)

GOLDEN = os.path.join(REPO_ROOT, "crates", "shoulders-record", "tests", "data", "golden_records.json")
LOG = "pyclient.example/log"

# Strings that exercise the escaping rules records can meet: quotes, backslashes, a slash,
# non-ASCII (Latin, CJK, an emoji outside the BMP, U+2028); descriptions add newline and tab
# (the only control characters a record field may hold).
TRICKY = "q\"b\\s/ é 世 🦀 \u2028 end"
BODIES = [
    ("actor.register", {"handle": "py-user_1", "name": "Py " + TRICKY,
                        "url": "https://py.example/~u?x=1&y=2",
                        "payout_address": "IBAN DE00 1234"}),
    ("dataset.create", {"dataset_id": "py-user_1/verse", "name": "Verse éè — \"quoted\"",
                        "description": "line one\nline two\t" + TRICKY, "access": "allowlist",
                        "allowlist": ["bob", "carol"]}),
    ("data.contribute", {"dataset_id": "py-user_1/verse",
                         "content_hash": "sha256:" + "ab" * 32, "byte_size": 1 << 40,
                         "token_count": 0, "media_type": "text/plain", "title": "t",
                         "tdm_reservation": True}),
]


def cli_sign(key_path, kind, body, client_id, ts_ms, tmp):
    body_path = os.path.join(tmp, "body.json")
    with open(body_path, "w", encoding="utf-8") as f:
        json.dump(body, f, ensure_ascii=False, indent=2)  # Not canonical: the CLI re-encodes.
    return run("sign", "--log", LOG, "--key", key_path, "--kind", kind, "--body", body_path,
               "--id", client_id, "--ts-ms", str(ts_ms)).encode("utf-8")


class GoldenRecords(unittest.TestCase):
    def test_golden_records_have_the_same_bytes(self):
        with open(GOLDEN, encoding="utf-8") as f:
            cases = json.load(f)
        self.assertGreaterEqual(len(cases), 4)
        for case in cases:
            key = ActorKey.from_seed(bytes.fromhex(case["seed_hex"]))
            ours = sign_record(key, case["log"], case["kind"], case["body"], case["client_id"],
                               case["ts_ms"])
            self.assertEqual(ours, case["bytes"].encode("utf-8"), case["kind"])


class AgainstTheCli(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_python_and_cli_sign_the_same_bytes(self):
        key = ActorKey.generate()
        key_path = os.path.join(self.tmp.name, "py.key")
        key.save(key_path)
        for i, (kind, body) in enumerate(BODIES):
            ts_ms = MAX_SAFE_INTEGER - i * 997  # The largest timestamps a record holds.
            ours = sign_record(key, LOG, kind, body, f"py-{i}", ts_ms)
            theirs = cli_sign(key_path, kind, body, f"py-{i}", ts_ms, self.tmp.name)
            self.assertEqual(ours, theirs, kind)
            # The signature is over the domain-separated envelope without "sig".
            payload = signing_payload(key, LOG, kind, body, f"py-{i}", ts_ms)
            self.assertTrue(payload.startswith(b"shoulders/record/v1\n{\"body\":"))
            self.assertNotIn(b"\"sig\"", payload)

    def test_a_key_written_by_the_cli_signs_as_the_cli_does(self):
        key_path = os.path.join(self.tmp.name, "cli.key")
        printed = json.loads(run("key", "new", "--out", key_path))
        key = ActorKey.load(key_path)
        self.assertEqual(key.public_key_b64(), printed["public_key"])
        with open(key_path, encoding="utf-8") as f:
            self.assertEqual(key.to_file_text(), f.read())
        kind, body = BODIES[0]
        self.assertEqual(sign_record(key, LOG, kind, body, "cli-key", 42),
                         cli_sign(key_path, kind, body, "cli-key", 42, self.tmp.name))

    def test_a_signature_changes_with_every_signed_field(self):
        key = ActorKey.generate()
        kind, body = BODIES[0]
        base = sign_record(key, LOG, kind, body, "a", 1)
        for other in (sign_record(key, "other.example/log", kind, body, "a", 1),
                      sign_record(key, LOG, kind, body, "b", 1),
                      sign_record(key, LOG, kind, body, "a", 2),
                      sign_record(ActorKey.generate(), LOG, kind, body, "a", 1)):
            self.assertNotEqual(json.loads(base)["sig"], json.loads(other)["sig"])


class Keys(unittest.TestCase):
    def test_key_files_are_private_and_never_overwritten(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "k.key")
            key = ActorKey.generate()
            key.save(path)
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
            with self.assertRaises(ShouldersError) as e:
                ActorKey.generate().save(path)
            self.assertEqual(e.exception.code, "E_KEY_FILE")
            self.assertEqual(ActorKey.load(path).seed(), key.seed())
            self.assertNotIn(key.to_file_text().split('"secret_seed":"')[1][:10], repr(key))

    def test_bad_key_files_are_refused_with_e_key_file(self):
        good = json.loads(ActorKey.generate().to_file_text())
        other = json.loads(ActorKey.generate().to_file_text())
        bad = ["", "not json", "[]", json.dumps({**good, "format": "v0"}),
               json.dumps({**good, "public_key": other["public_key"]}),
               json.dumps({**good, "secret_seed": "AAAA"}), json.dumps({**good, "extra": 1})]
        for text in bad:
            with self.assertRaises(ShouldersError) as e:
                ActorKey.from_file_text(text)
            self.assertEqual(e.exception.code, "E_KEY_FILE", text)
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaises(ShouldersError) as e:
                ActorKey.load(os.path.join(tmp, "missing.key"))
            self.assertEqual(e.exception.code, "E_KEY_FILE")


class Canonical(unittest.TestCase):
    def test_keys_sorted_no_whitespace_none_omitted(self):
        self.assertEqual(canonical_json({"b": 1, "a": {"z": [1, 2], "y": "é\n", "n": None}}),
                         "{\"a\":{\"y\":\"é\\n\",\"z\":[1,2]},\"b\":1}".encode("utf-8"))

    def test_control_characters_are_escaped_as_serde_json_does(self):
        # serde_json writes \b \f \n \r \t short, the other C0 controls as lowercase \u00XX,
        # and DEL and everything above it as plain UTF-8.
        self.assertEqual(canonical_json({"s": "\x00\x01\x07\b\t\n\x0b\f\r\x1f\x7f\u0080"}),
                         b'{"s":"\\u0000\\u0001\\u0007\\b\\t\\n\\u000b\\f\\r\\u001f\x7f\xc2\x80"}')

    def test_bad_input_is_refused_with_its_code(self):
        key = ActorKey.generate()
        deep = {}
        for _ in range(100):
            deep = {"d": deep}
        cases = [
            ({"a": 1.5}, "actor.register", "a", 1, "E_RECORD_BAD_NUMBER"),
            ({"a": -1}, "actor.register", "a", 1, "E_RECORD_BAD_NUMBER"),
            ({"a": MAX_SAFE_INTEGER + 1}, "actor.register", "a", 1, "E_RECORD_BAD_NUMBER"),
            ({"a": {1: 2}}, "actor.register", "a", 1, "E_RECORD_SCHEMA"),
            ({"a": object()}, "actor.register", "a", 1, "E_RECORD_SCHEMA"),
            ({"a": "\ud800"}, "actor.register", "a", 1, "E_RECORD_NOT_UTF8"),
            (deep, "actor.register", "a", 1, "E_RECORD_MALFORMED"),
            ([], "actor.register", "a", 1, "E_RECORD_SCHEMA"),
            ({}, "actor.nonsense", "a", 1, "E_KIND_UNKNOWN"),
            ({}, "actor.register", "has space", 1, "E_FIELD_INVALID"),
            ({}, "actor.register", "x" * 129, 1, "E_FIELD_INVALID"),
            ({}, "actor.register", "a", -1, "E_FIELD_INVALID"),
            ({}, "actor.register", "a", True, "E_FIELD_INVALID"),
            ({"a": "x" * MAX_RECORD_BYTES}, "actor.register", "a", 1, "E_RECORD_TOO_LARGE"),
        ]
        for body, kind, client_id, ts_ms, code in cases:
            with self.assertRaises(ShouldersError) as e:
                sign_record(key, LOG, kind, body, client_id, ts_ms)
            self.assertEqual(e.exception.code, code, (kind, client_id, ts_ms))


if __name__ == "__main__":
    unittest.main()
