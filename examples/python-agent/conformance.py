"""Replay Mandate's conformance vectors (spec/samples) with biscuit-python.

    python conformance.py [spec/samples]

An independent check of the vectors with the standard Biscuit library for
Python (biscuit-python 0.4) and the stdlib decoder of SPEC Appendix B
(mandate_wire.py), nothing of Mandate's own code. It checks what these two
can decide and says what it skips:

  token-bytes     a byte token's `token` text (URL-safe base64, padding
                  optional) decodes to exactly its token_file's bytes;
  biscuit-accepts biscuit-python parses the bytes under the trusted root key
                  the token names (else root key 0) iff biscuit_accepts;
  datalog         every request carrying datalog_allows: a plain Biscuit
                  authorizer (the token's checks, the request facts of SPEC
                  §2.1 as parameters, `allow if true`, the vectors' run
                  limits) allows iff datalog_allows;
  chain           every case with an inspect output: the chain decoded with
                  mandate_wire (token id, principal, issued_at, max_depth,
                  hops with agent, key, purpose, block, revocation id,
                  expiry; narrowing blocks; approvals; blocks; size);
  validation      SPEC §5 / §7.1 step 1 request validation agrees with the
                  requests the vectors expect to be invalid_request;
  decision        the full decision where no §6/§14/§15 logic is needed: a
                  valid chain (inspect non-null), no approval and no holder
                  binding: allow iff the Datalog allows; a denial's kind is
                  expired/not_allowed (by the earliest failing block's
                  decoded expiry, §7.2) or evaluation, and its block is the
                  earliest failing block biscuit-python reports.

Each check prints `checked NAME: N ok, M mismatched`; the exit code is 1 on
any mismatch (each printed with case id/name, request index, expected, got).
"""

import base64
import binascii
import datetime
import hashlib
import json
import os
import re
import sys
import unicodedata

import biscuit_auth as bis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mandate_wire  # noqa: E402

CHECKS = ["token-bytes", "biscuit-accepts", "datalog", "chain", "validation", "decision"]
NAME_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")
URLSAFE = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
I64 = (-(2**63), 2**63 - 1)


class Report:
    def __init__(self):
        self.ok = {c: 0 for c in CHECKS}
        self.bad = {c: 0 for c in CHECKS}
        self.skipped = {}
        self.blocks_compared = 0

    def check(self, name, case, req, what, expected, got):
        if expected == got:
            self.ok[name] += 1
            return True
        self.bad[name] += 1
        where = f"case {case['id']} {case['name']}"
        if req is not None:
            where += f" request {req}"
        print(f"MISMATCH {name}: {where}: {what}: expected {expected!r}, got {got!r}")
        return False

    def skip(self, why):
        self.skipped[why] = self.skipped.get(why, 0) + 1


def urlsafe_b64(text):
    """URL-safe base64, padding optional, surrounding whitespace ignored."""
    s = text.strip().encode("ascii", "replace").rstrip(b"=")
    if not all(c in URLSAFE for c in s) or len(s) % 4 == 1:
        raise ValueError("not URL-safe base64")
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


def rfc3339(seconds):
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- SPEC §5 request validation (§7.1 step 1) ----------------------------


def is_name(s):
    return isinstance(s, str) and 1 <= len(s.encode()) <= 256 and all(c in NAME_CHARS for c in s)


def canonical_resource(r):
    """None when `r` is canonical (§5.2), else why not."""
    if not isinstance(r, str) or not 1 <= len(r.encode()) <= 256:
        return "length"
    if any(unicodedata.category(c) == "Cc" or c == "\\" for c in r):
        return "control character or backslash"
    for m in re.finditer("%", r):
        hx = r[m.start() + 1 : m.start() + 3]
        if len(hx) != 2 or not all(c in "0123456789abcdefABCDEF" for c in hx):
            return "% not starting a percent-encoding"
        b = chr(int(hx, 16))
        if b.isascii() and b.isalnum() or b in "-._~/\\\0%;":
            return f"%{hx} encodes a character servers decode"
    if r.startswith("/") and r != "/":
        path = r[1:]
        if ";" in path:
            return "; in a path"
        segs = path.split("/")
        for i, seg in enumerate(segs):
            if seg == "" and i != len(segs) - 1:
                return "empty segment"
            if seg in (".", ".."):
                return ". or .. segment"
    return None


def request_problem(req):
    """None when the request is valid (§5, §3.5, §7.1 step 1), else why not."""
    if not is_name(req.get("action")):
        return "action not in the name alphabet"
    why = canonical_resource(req.get("resource"))
    if why:
        return "resource: " + why
    params = req.get("params", {})
    if len(params) > 64:
        return "more than 64 parameters"
    for name, value in params.items():
        if not is_name(name):
            return f"parameter name {name!r} not in the name alphabet"
        if name == "time":
            return "parameter named time"
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return f"parameter {name} neither integer nor string"
        if isinstance(value, int) and not I64[0] <= value <= I64[1]:
            return f"parameter {name} out of i64"
        if isinstance(value, str) and len(value.encode()) > 4096:
            return f"parameter {name} longer than 4096 bytes"
    t = req.get("time")
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        return "time before 1970"
    return None


# --- Datalog (SPEC §2.1, §7.1 step 7) -------------------------------------

CHECK_RE = re.compile(r"Check n°(\d+) in block n°(\d+): ")


def authorize(token, req, limits):
    """(allowed: bool, error kind: None | "check" | "evaluation", failing
    block indexes) from a plain biscuit-python authorizer."""
    t = datetime.datetime.fromtimestamp(req["time"], datetime.timezone.utc)
    ab = bis.AuthorizerBuilder(
        "operation({operation}); resource({resource}); time({time}); allow if true;",
        {"operation": req["action"], "resource": req["resource"], "time": t},
    )
    r = req["resource"]
    if r.startswith("/"):
        cut = r.rindex("/") + 1
        if r[cut:]:
            ab.add_fact(bis.Fact("resource({dir}, {name})", {"dir": r[:cut], "name": r[cut:]}))
    for name, value in req.get("params", {}).items():
        ab.add_fact(bis.Fact("param({name}, {value})", {"name": name, "value": value}))
    # biscuit-python 0.4 sets all three limits (AuthorizerBuilder.set_limits;
    # max_time is a timedelta): nothing is left at biscuit-auth's defaults.
    lim = ab.limits()
    lim.max_facts = limits["max_facts"]
    lim.max_iterations = limits["max_iterations"]
    lim.max_time = datetime.timedelta(milliseconds=limits["max_time_ms"])
    ab.set_limits(lim)
    try:
        ab.build(token).authorize()
        return True, None, []
    except bis.AuthorizationError as e:
        msg = str(e)
        # Biscuit lists the failed checks as `Check n°C in block n°B: <source>`;
        # a check's printed source could itself contain that text, so only
        # the markers after `checks failed: ` and before each `, Check` count
        # (good enough for an optional comparison of the block).
        blocks = sorted({int(b) for _, b in CHECK_RE.findall(msg)})
        if blocks:
            return False, "check", blocks
        return False, "evaluation", []
    except Exception:  # noqa: BLE001 - a limit hit or an execution error
        return False, "evaluation", []


# --- chain from mandate_wire (SPEC §6 result, inspect --json) -------------


def _expiry_of(chk):
    """The expiry of a check of the canonical shape (§4.1, §4.4): kind "one",
    no scope (but an approval query's approver key, §14.2), head `query()`,
    every query binding a variable with `time/1`
    and starting with `$that <= DATE`, the same DATE in every query. (Only
    the expiry is read; the rest of each query is not decoded as a grant.)"""
    if chk.kind != "one" or not chk.queries:
        return None
    dates = set()
    for q in chk.queries:
        # An approval query (§14.2) trusts its approver's key; no other scope.
        approval = any(name == "approval" for name, _ in q.body)
        if q.head != ("query", []) or not q.expressions:
            return None
        if q.scopes and not (approval and all(sc[0] == "public_key" for sc in q.scopes)):
            return None
        tvars = [t[0] for name, t in q.body if name == "time" and len(t) == 1 and t[0][0] == "variable"]
        e = q.expressions[0]
        if not (
            tvars
            and len(e) == 3
            and e[0] == ("value", tvars[0])
            and e[1][0] == "value"
            and e[1][1][0] == "date"
            and e[2][:2] == ("binary", "less_or_equal")
        ):
            return None
        dates.add(e[1][1][1])
    return dates.pop() if len(dates) == 1 else None


def block_expiry(block):
    """A block's expiry (§4.4): the earliest decoded expiry of its checks."""
    found = [d for d in map(_expiry_of, block.checks) if d is not None]
    return min(found) if found else None


def decode_chain(data):
    tok = mandate_wire.decode_token(data)
    facts = mandate_wire.chain_facts(tok)
    root = facts[0]
    chain = {
        "token_id": root["token"][0] if root["token"] else None,
        "principal": root["principal"][0] if root["principal"] else None,
        "issued_at": rfc3339(root["issued_at"][0]) if root["issued_at"] else None,
        "max_depth": root["max_depth"][0] if root["max_depth"] else None,
        "hops": [],
        "approvals": [],
    }
    for b, f in zip(tok.blocks, facts):
        exp_s = block_expiry(b)
        exp = rfc3339(exp_s)
        if b.index == 0 or (b.external_key is not None and f["agent"]):
            chain["hops"].append(
                {
                    "agent": f["agent"][0][0],
                    "agent_key": "ed25519/" + f["agent"][0][1].hex(),
                    "purpose": f["purpose"][0] if f["purpose"] else None,
                    "block": b.index,
                    "revocation_id": b.revocation_id,
                    "expires_at": exp,
                    "expires_s": exp_s,
                    "narrowing": [],
                }
            )
        elif b.external_key is None:
            chain["hops"][-1]["narrowing"].append(
                {"block": b.index, "revocation_id": b.revocation_id, "expires_at": exp, "expires_s": exp_s}
            )
        else:
            chain["approvals"].append({"block": b.index, "revocation_id": b.revocation_id})
    return tok, chain


def compare_chain(rep, case, data, insp):
    tok, got = decode_chain(data)
    want = insp["chain"]
    what = {
        "token_id": want["token_id"],
        "principal": want["principal"],
        "issued_at": want["issued_at"],
        "max_depth": want.get("max_depth"),
        "hops": len(want["hops"]),
        "approvals": len(want.get("approvals", [])),
        "blocks": insp["blocks"],
        "size_bytes": insp["size_bytes"],
    }
    mine = {
        "token_id": got["token_id"],
        "principal": got["principal"],
        "issued_at": got["issued_at"],
        "max_depth": got["max_depth"],
        "hops": len(got["hops"]),
        "approvals": len(got["approvals"]),
        "blocks": len(tok.blocks),
        "size_bytes": len(data),
    }
    for k in what:
        rep.check("chain", case, None, k, what[k], mine[k])
    for i, (w, g) in enumerate(zip(want["hops"], got["hops"])):
        for k in ("agent", "agent_key", "block", "revocation_id", "expires_at"):
            rep.check("chain", case, None, f"hop {i} {k}", w[k], g[k])
        rep.check("chain", case, None, f"hop {i} purpose", w.get("purpose"), g["purpose"])
        wn = [(n["block"], n["revocation_id"], n["expires_at"]) for n in w.get("narrowing", [])]
        gn = [(n["block"], n["revocation_id"], n["expires_at"]) for n in g["narrowing"]]
        rep.check("chain", case, None, f"hop {i} narrowing", wn, gn)
    wa = [(a["block"], a["revocation_id"]) for a in want.get("approvals", [])]
    ga = [(a["block"], a["revocation_id"]) for a in got["approvals"]]
    rep.check("chain", case, None, "approval blocks", wa, ga)
    return got


# --- the runner -----------------------------------------------------------


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    root = argv[1] if len(argv) > 1 else os.path.join(here, "..", "..", "spec", "samples")
    with open(os.path.join(root, "vectors.json"), encoding="utf-8") as f:
        vec = json.load(f)
    ver = vec["verifier"]
    keys = {k["id"]: bis.PublicKey(k["public_key"]) for k in ver["root_keys"]}
    limits = ver["limits"]
    rep = Report()
    needs_chain_rules = text_cases = 0

    for case in vec["cases"]:
        data = token = kid = None
        decoded = False
        if "token_file" in case:
            with open(os.path.join(root, case["token_file"]), "rb") as f:
                data = f.read()
            try:
                text = urlsafe_b64(case["token"])
                rep.check(
                    "token-bytes", case, None, "base64 of token_file (length, sha256)",
                    (len(data), hashlib.sha256(data).hexdigest()),
                    (len(text), hashlib.sha256(text).hexdigest()),
                )
            except ValueError as e:
                rep.check("token-bytes", case, None, "base64 of token_file", "decodes", str(e))
            # 2. Biscuit alone, under the key the token names (else root 0).
            try:
                kid = mandate_wire.decode_token(data).root_key_id
                decoded = True
            except ValueError:
                kid = None
            key = keys.get(kid, keys[0])
            try:
                token = bis.Biscuit.from_bytes(data, key)
            except Exception:  # noqa: BLE001 - any refusal
                token = None
            rep.check("biscuit-accepts", case, None, "biscuit_accepts", case["biscuit_accepts"], token is not None)
            if case["biscuit_accepts"] and case.get("inspect") is None:
                needs_chain_rules += 1
        else:
            text_cases += 1

        insp = case.get("inspect")
        chain = None
        if insp is not None:
            if data is None:
                rep.check("chain", case, None, "inspect of a text token", None, "inspect output")
            else:
                try:
                    chain = compare_chain(rep, case, data, insp)
                except (ValueError, IndexError) as e:
                    rep.check("chain", case, None, "mandate_wire decode", "decodes", f"{type(e).__name__}: {e}")

        covers = {c.split(":")[0] for c in case["covers"]}
        for i, r in enumerate(case["requests"]):
            req, exp = r["request"], r["expect"]
            problem = request_problem(req)
            rep.check(
                "validation", case, i, "invalid_request",
                exp.get("kind") == "invalid_request", problem is not None,
            )
            dl = None
            if "datalog_allows" in r:
                if token is None:
                    rep.check("datalog", case, i, "token parses for the Datalog", True, False)
                else:
                    try:
                        dl = authorize(token, req, limits)
                        rep.check("datalog", case, i, "datalog_allows", r["datalog_allows"], dl[0])
                    except Exception as e:  # noqa: BLE001 - request facts refused
                        rep.check("datalog", case, i, "authorizer built", "built", f"{type(e).__name__}: {e}")
                        dl = None
            # 5. Full decisions.
            if problem is not None:
                if exp.get("kind") == "invalid_request":
                    rep.check("decision", case, i, "decision", "deny/invalid_request", "deny/invalid_request")
                else:
                    rep.skip("request invalid by §5 but not expected invalid (a validation mismatch)")
                continue
            # §8, §7.1 step 3: this verifier trusts keys by id; a token of
            # at most 64 KiB naming none, or an id it does not hold, is
            # unknown_root_key before any signature or chain rule.
            if decoded and len(data) <= 64 * 1024 and kid not in keys:
                got = {"decision": "deny", "kind": "unknown_root_key"}
                rep.check("decision", case, i, "decision", {k: exp.get(k) for k in got}, got)
                continue
            if insp is None:
                rep.skip("chain not valid (needs §6, §7.1 steps 2-5)")
                continue
            if chain is None:
                rep.skip("chain not decoded (a chain mismatch)")
                continue
            if "approval" in covers:
                rep.skip("approval (§14)")
                continue
            if "holder" in covers or "presented" in r:
                rep.skip("holder binding (§15)")
                continue
            if dl is None:
                if token is None:
                    rep.skip("token not parsed")
                    continue
                dl = authorize(token, req, limits)
            allowed, err, blocks = dl
            got = {"decision": "allow" if allowed else "deny"}
            want = {"decision": exp["decision"]}
            if not allowed:
                if err == "evaluation":
                    got["kind"] = "evaluation"
                else:
                    first = blocks[0]
                    exp_at = None
                    for h in chain["hops"]:
                        if h["block"] == first:
                            exp_at = h["expires_s"]
                        for n in h["narrowing"]:
                            if n["block"] == first:
                                exp_at = n["expires_s"]
                    expired = exp_at is not None and exp_at < req["time"]
                    got["kind"] = "expired" if expired else "not_allowed"
                    got["block"] = first
                    if "block" in exp:
                        want["block"] = exp["block"]
                        rep.blocks_compared += 1
                    else:
                        got.pop("block")
                want["kind"] = exp.get("kind")
            rep.check("decision", case, i, "decision", want, got)

    for c in CHECKS:
        print(f"checked {c}: {rep.ok[c]} ok, {rep.bad[c]} mismatched")
    print(f"decision denials whose block was compared: {rep.blocks_compared}")
    for why, n in sorted(rep.skipped.items()):
        print(f"skipped decision: {n} requests: {why}")
    print(f"text-token cases (checks 1-4 do not apply): {text_cases}")
    print(f"needs §6 chain rules: {needs_chain_rules} cases Biscuit accepts but inspect refuses")
    return 1 if any(rep.bad.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
