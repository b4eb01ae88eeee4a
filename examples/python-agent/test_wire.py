"""mandate_wire.py (SPEC Appendix B) against the reference: tokens minted by
the `mandate` CLI are decoded with the stdlib decoder and compared with
`mandate inspect --json`; malformed bytes raise ValueError, nothing else.

MANDATE_BIN names the binary (default: the release build under
$HOME/.cache/mandate); without it the tests skip, unless
MANDATE_AGENTS_REQUIRED=1.
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mandate_wire as w  # noqa: E402

BIN = os.environ.get("MANDATE_BIN") or os.path.expanduser("~/.cache/mandate/target/release/mandate")
REQUIRED = os.environ.get("MANDATE_AGENTS_REQUIRED") == "1"


def _have_bin():
    if os.access(BIN, os.X_OK):
        return True
    if REQUIRED:
        raise AssertionError(f"mandate binary not found at {BIN} (MANDATE_BIN)")
    return False


@unittest.skipUnless(_have_bin(), f"mandate binary not found at {BIN}; set MANDATE_BIN")
class WireTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.d = cls.tmp.name
        cls.root = cls.keygen("root")
        cls.a, cls.b, cls.c, cls.fin = (cls.keygen(n) for n in ("a", "b", "c", "fin"))
        cls.mandate("issue", "--key", "root.key", "--principal", "user:alice", "--to", "support-agent",
                    "--to-key", cls.a, "--allow", "read,list,pay:/api/customers/*", "--where", "rows<=100",
                    "--approval", f"pay when amount>100 by finance={cls.fin}",
                    "--purpose", 'answer "support" tickets', "--ttl", "1h", "--max-depth", "3", out="t0")
        cls.mandate("attenuate", "--key", "a.key", "--to", "sub-agent", "--to-key", cls.b,
                    "--allow", "read:/api/customers/*", "--purpose", "look up customer 42", "--ttl", "10m",
                    "t0", out="t1")
        cls.mandate("attenuate", "--key", "b.key", "--to", "leaf-agent", "--to-key", cls.c,
                    "--allow", "read:/api/customers/42", "--ttl", "5m", "t1", out="t2")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def mandate(cls, *args, out=None):
        r = subprocess.run([BIN, *args], cwd=cls.d, capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"mandate {args}: {r.stderr}")
        if out:
            with open(os.path.join(cls.d, out), "w") as f:
                f.write(r.stdout)
        return r.stdout

    @classmethod
    def keygen(cls, name):
        return cls.mandate("keygen", "--out", f"{name}.key").strip().splitlines()[-1]

    def read(self, name):
        with open(os.path.join(self.d, name)) as f:
            return f.read()

    def inspect(self, name):
        return json.loads(self.mandate("inspect", "--json", "--public-key", self.root, name))

    def check_matches_inspect(self, name, token):
        ref = self.inspect(name)
        chain = ref["chain"]
        self.assertEqual(ref["blocks"], len(token.blocks))
        facts = w.chain_facts(token)
        self.assertEqual(token.root_key_id, 0)
        self.assertEqual(facts[0]["token"], [chain["token_id"]])
        self.assertEqual(facts[0]["principal"], [chain["principal"]])
        self.assertEqual(facts[0]["max_depth"], [chain["max_depth"]] if "max_depth" in chain else [])
        self.assertEqual(len(facts[0]["issued_at"]), 1)
        for hop in chain["hops"]:
            b = hop["block"]
            self.assertEqual(token.blocks[b].revocation_id, hop["revocation_id"])
            [(agent, key)] = facts[b]["agent"]
            self.assertEqual(agent, hop["agent"])
            self.assertEqual("ed25519/" + key.hex(), hop["agent_key"])
            self.assertEqual(facts[b]["purpose"], [hop["purpose"]] if "purpose" in hop else [])
            signer = hop["signed_by"]
            if signer["kind"] == "root":
                self.assertIsNone(token.blocks[b].external_key)
            else:
                self.assertEqual("ed25519/" + token.blocks[b].external_key.hex(), signer["key"])
        return chain

    def test_a_root_and_two_hops_decode_as_inspect_reads_them(self):
        for name, hops in (("t0", 1), ("t1", 2), ("t2", 3)):
            token = w.decode_token(w.read_token_text(self.read(name)))
            chain = self.check_matches_inspect(name, token)
            self.assertEqual(len(chain["hops"]), hops)
        token = w.decode_token(w.read_token_text(self.read("t2")))
        root = token.blocks[0]
        self.assertIn(root.version, range(3, 7))
        # A string with quotes comes back as it was written (never re-parsed).
        self.assertEqual(w.chain_facts(token)[0]["purpose"], ['answer "support" tickets'])
        approvers = [f for f in root.facts if f[0] == "approver"]
        self.assertEqual(approvers, [("approver", [("string", "finance"),
                                                  ("bytes", bytes.fromhex(self.fin.split("/")[1]))])])
        # Every block has the canonical check of §4.1: time, operation, resource.
        for b in token.blocks:
            self.assertTrue(b.checks)
            body = [p[0] for p in b.checks[0].queries[0].body]
            self.assertEqual(body[:3], ["time", "operation", "resource"])
        # Third-party blocks have their own symbol table (defaults + own).
        self.assertIn("sub-agent", token.blocks[1].symbols)
        self.assertNotIn("sub-agent", token.blocks[0].symbols)

    def test_text_forms_are_accepted(self):
        text = self.read("t1").strip()
        want = w.decode_token(w.read_token_text(text))
        for form in (text.rstrip("="), "  \n" + text + "\n\t", text.encode()):
            self.assertEqual(w.decode_token(w.read_token_text(form)), want)
        raw = w.read_token_text(text)
        self.assertEqual(w.read_token_text(raw), raw)

    def test_the_cli_prints_json(self):
        r = subprocess.run([sys.executable, w.__file__, os.path.join(self.d, "t1")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(len(out["blocks"]), 2)
        self.assertEqual(out["blocks"][1]["external_key"], self.a.split("/")[1])

    def test_a_narrowing_block_shares_the_token_symbol_table(self):
        try:
            import biscuit_auth as ba
        except ImportError:
            self.skipTest("biscuit-python is not installed (narrowing block)")
        root_pub = ba.PublicKey(self.root)
        t = ba.Biscuit.from_base64(self.read("t1").strip(), root_pub)
        t = t.append(ba.BlockBuilder('check if resource("/api/customers/42"), operation("read");'))
        with open(os.path.join(self.d, "t3"), "w") as f:
            f.write(t.to_base64())
        token = w.decode_token(w.read_token_text(t.to_base64()))
        self.check_matches_inspect("t3", token)
        narrowing = token.blocks[2]
        self.assertIsNone(narrowing.external_key)
        self.assertEqual(w.chain_facts(token)[2]["agent"], [])
        body = narrowing.checks[0].queries[0].body
        self.assertEqual(body, [("resource", [("string", "/api/customers/42")]),
                                ("operation", [("string", "read")])])
        self.assertEqual(len(token.blocks[2].revocation_id), 128)

    def test_malformed_bytes_raise_value_error(self):
        raw = w.read_token_text(self.read("t2"))
        rng = random.Random(15)
        cases = [b"", b"\x00", raw[: len(raw) // 2], raw[:-1], bytes(rng.getrandbits(8) for _ in range(300)),
                 b"\xff" * 11, b"\x0a\xff\xff\xff\xff\x0f", b"\x12" + b"\x80" * 10 + b"\x02",
                 bytes(70 * 1024)]
        for i in range(0, len(raw), 7):
            flipped = bytearray(raw)
            flipped[i] ^= 0x55
            cases.append(bytes(flipped))
        for _ in range(200):
            cases.append(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200))))
        # Deeply nested junk: arrays within arrays within a fact.
        term = b""
        for _ in range(500):
            term = b"\x4a" + _len(b"\x0a" + _len(term))
        block = b"\x18\x06" + b"\x22" + _len(b"\x0a" + _len(b"\x08\x00\x12" + _len(term)))
        cases.append(_token(block))
        for case in cases:
            try:
                w.decode_token(case)
            except ValueError:
                pass
            # Any other exception fails the test; a decode that succeeds is
            # fine (a flipped byte inside a string still decodes).
        with self.assertRaises(ValueError):
            w.decode_token(_token(block))
        with self.assertRaisesRegex(ValueError, "larger than"):
            w.decode_token(bytes(70 * 1024))
        with self.assertRaisesRegex(ValueError, "version"):
            w.decode_token(_token(b"\x18\x07"))
        with self.assertRaisesRegex(ValueError, "unknown string id"):
            w.decode_token(_token(b"\x18\x03\x22" + _len(b"\x0a" + _len(b"\x08\x00\x12\x03\x18\x80\x08"))))
        with self.assertRaisesRegex(ValueError, "not Ed25519"):
            w.decode_token(_token(b"\x18\x03", alg=1))
        for bad in ("!!!", "a" * 90000):
            with self.assertRaises(ValueError):
                w.read_token_text(bad)


def _len(b):
    n, out = len(b), b""
    while True:
        if n < 0x80:
            return out + bytes([n]) + b
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7


def _token(block, alg=0):
    """A container around one authority block (signatures are not checked
    by the decoder; a verifier checks them first)."""
    key = b"\x08" + bytes([alg]) + b"\x12" + _len(bytes.fromhex(
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"))
    signed = b"\x0a" + _len(block) + b"\x12" + _len(key) + b"\x1a" + _len(bytes(64))
    return b"\x12" + _len(signed) + b"\x22" + _len(b"\x12" + _len(bytes(64)))


if __name__ == "__main__":
    unittest.main()
