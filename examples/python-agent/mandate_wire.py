"""Decode a Mandate token's bytes (SPEC.md Appendix B), Python 3 stdlib only.

Written from SPEC.md Appendix B alone: Biscuit's protobuf container and
blocks, the symbol tables (defaults 0..27, the token's own from 1024; first-
party blocks share one table, a third-party block has its own) and the
public-key tables. It does NOT verify signatures: decode only bytes whose
signatures a Biscuit library has verified (SPEC §7.1 steps 3-4).

API (every malformed input raises ValueError, nothing else):

  read_token_text(text: str | bytes) -> bytes
      URL-safe base64 (padding optional, surrounding whitespace ignored) to
      bytes; bytes that are not base64 text are returned as they are.
  decode_token(data: bytes) -> Token
      Token(root_key_id: int | None, blocks: list[Block])
      Block(index, version, external_key: bytes(32) | None,
            signature: str (hex; = revocation id), symbols: list[str],
            public_keys: list[bytes(32)], facts: list[(name, [term])],
            rules: list[Rule], checks: list[Check], scopes: list[scope])
      Rule(head: (name, [term]), body: [(name, [term])],
           expressions: [[op]], scopes: [scope])
      Check(kind: "one" | "all" | "reject", queries: [Rule])
      term:  ("variable", name) ("integer", int) ("string", str)
             ("date", seconds since 1970) ("bytes", bytes) ("bool", bool)
             ("null", None) ("set", [term]) ("array", [term])
             ("map", [(key, term)]) with key an int or a str
      op:    ("value", term) ("unary", kind_name, ffi_name | None)
             ("binary", kind_name, ffi_name | None)
             ("closure", [param names], [op])
      scope: ("authority",) ("previous",) ("public_key", bytes(32))
  chain_facts(token: Token) -> list[dict]
      Per block, its Mandate facts (SPEC §2.2): keys "token", "principal",
      "purpose" (lists of str), "issued_at" (list of int dates), "max_depth"
      (list of int), "agent" (list of (id, key bytes)), "approval" (list of
      (digest bytes, expiry date)); only well-typed facts are listed.
  to_json(token: Token) -> object   (bytes as hex), for `python mandate_wire.py FILE`.
"""

import base64
import binascii
import json
import sys
from dataclasses import dataclass, field

MAX_TOKEN_BYTES = 64 * 1024
MAX_TEXT_CHARS = 65536 * 4 // 3 + 4
MAX_DEPTH = 100  # message nesting inside one Block (prost's recursion limit)
OFFSET = 1024
MIN_VERSION, MAX_VERSION = 3, 6
MAX_BLOCKS = 16

DEFAULT_SYMBOLS = [
    "read", "write", "resource", "operation", "right", "time", "role",
    "owner", "tenant", "namespace", "user", "team", "service", "admin",
    "email", "group", "member", "ip_address", "client", "client_ip",
    "domain", "path", "version", "cluster", "node", "hostname", "nonce",
    "query",
]
UNARY = ["negate", "parens", "length", "type_of", "ffi"]
BINARY = [
    "less_than", "greater_than", "less_or_equal", "greater_or_equal",
    "equal", "contains", "prefix", "suffix", "regex", "add", "sub", "mul",
    "div", "and", "or", "intersection", "union", "bitwise_and", "bitwise_or",
    "bitwise_xor", "not_equal", "heterogeneous_equal",
    "heterogeneous_not_equal", "lazy_and", "lazy_or", "all", "any", "get",
    "ffi", "try_or",
]
V3_1_BINARY = {17, 18, 19, 20}
V3_3_BINARY = {21, 22, 23, 24, 25, 26, 28}


@dataclass
class Rule:
    head: tuple
    body: list
    expressions: list
    scopes: list


@dataclass
class Check:
    kind: str
    queries: list


@dataclass
class Block:
    index: int
    version: int
    external_key: object
    signature: str
    symbols: list = field(default_factory=list)
    public_keys: list = field(default_factory=list)
    facts: list = field(default_factory=list)
    rules: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    scopes: list = field(default_factory=list)

    @property
    def revocation_id(self):
        return self.signature


@dataclass
class Token:
    root_key_id: object
    blocks: list


# --- protobuf wire format (Appendix B.1) ---------------------------------

VARINT, I64, LEN, I32 = 0, 1, 2, 5


def _varint(buf, pos):
    result = 0
    for i in range(10):
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        if i == 9 and b > 1:
            raise ValueError("varint longer than 64 bits")
        result |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return result, pos
    raise ValueError("varint longer than 10 bytes")


def _fields(buf):
    """The (number, wire type, value) of each field of a message."""
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0 or num > 0x1FFFFFFF:
            raise ValueError(f"invalid field number {num}")
        if wt == VARINT:
            val, pos = _varint(buf, pos)
        elif wt == I64 or wt == I32:
            n = 8 if wt == I64 else 4
            if pos + n > len(buf):
                raise ValueError("truncated fixed-width field")
            val = int.from_bytes(buf[pos:pos + n], "little")
            pos += n
        elif wt == LEN:
            n, pos = _varint(buf, pos)
            if n > len(buf) - pos:
                raise ValueError("length-delimited field runs past its message")
            val = bytes(buf[pos:pos + n])
            pos += n
        else:
            raise ValueError(f"unsupported wire type {wt} (field {num})")
        out.append((num, wt, val))
    return out


class _Msg:
    """A message's fields by number, with proto2 semantics: a repeated
    singular scalar keeps the last value, a repeated singular message is
    merged (its occurrences concatenated), absent fields take defaults."""

    def __init__(self, buf, schema, what):
        # schema: number -> (wire type, "one" | "many")
        self.what = what
        self.one = {}
        self.many = {}
        for num, wt, val in _fields(buf):
            spec = schema.get(num)
            if spec is None:
                continue  # unknown field: skipped, like protobuf
            want, card = spec
            if card == "packed":  # repeated scalar, packed or not
                if wt == LEN:
                    p, vals = 0, []
                    while p < len(val):
                        v, p = _varint(val, p)
                        vals.append(v)
                    self.many.setdefault(num, []).extend(vals)
                    continue
                card = "many"
            if wt != want:
                raise ValueError(f"{what}: field {num} has wire type {wt}, expected {want}")
            if card == "many":
                self.many.setdefault(num, []).append(val)
            elif card == "msg" and num in self.one:
                self.one[num] = self.one[num] + val
            else:
                self.one[num] = val

    def get(self, num, default=None):
        return self.one.get(num, default)

    def all(self, num):
        return self.many.get(num, [])


def _oneof(buf, schema, what):
    """The last set member of a oneof message (merged if it is a message
    set more than once in a row): (number, value) or (None, None)."""
    cur, val = None, None
    for num, wt, v in _fields(buf):
        spec = schema.get(num)
        if spec is None:
            continue
        if wt != spec:
            raise ValueError(f"{what}: field {num} has wire type {wt}, expected {spec}")
        if num == cur and wt == LEN and num in _ONEOF_MESSAGES.get(what, ()):
            val = val + v
        else:
            cur, val = num, v
    return cur, val


_ONEOF_MESSAGES = {"Term": (7, 8, 9, 10), "Op": (1, 2, 3, 4), "Proof": ()}


def _u32(v):
    return v & 0xFFFFFFFF


def _i64(v):
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >> 63 else v


def _i32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _utf8(b, what):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not valid UTF-8") from None


# --- Ed25519 public keys ----------------------------------------------------

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P


def _public_key(buf, what):
    m = _Msg(buf, {1: (VARINT, "one"), 2: (LEN, "one")}, what)
    alg = _i32(m.get(1, 0))
    key = m.get(2, b"")
    if alg != 0:
        raise ValueError(f"{what}: key algorithm {alg} is not Ed25519 (Mandate accepts only Ed25519)")
    if len(key) != 32:
        raise ValueError(f"{what}: an Ed25519 public key is 32 bytes, got {len(key)}")
    # A point on the curve: x^2 = (y^2 - 1) / (d y^2 + 1) has a root mod p.
    y = (int.from_bytes(key, "little") & ((1 << 255) - 1)) % _P
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    if x2 != 0 and pow(x2, (_P - 1) // 2, _P) != 1:
        raise ValueError(f"{what}: not a valid Ed25519 public key")
    return key


# --- Datalog (Appendix B.3, B.4) ---------------------------------------------

class _Ctx:
    def __init__(self, symbols, keys, index):
        self.symbols = symbols
        self.keys = keys
        self.index = index
        self.v3_3 = False
        self.v3_1 = False
        self.scoped = False

    def sym(self, i, what="symbol"):
        if i < OFFSET:
            if i < len(DEFAULT_SYMBOLS):
                return DEFAULT_SYMBOLS[i]
        elif i - OFFSET < len(self.symbols):
            return self.symbols[i - OFFSET]
        raise ValueError(f"block {self.index}: unknown {what} id {i}")

    def key(self, i):
        if 0 <= i < len(self.keys):
            return self.keys[i]
        raise ValueError(f"block {self.index}: scope names public key {i}, not in the table")


def _depth(depth):
    if depth > MAX_DEPTH:
        raise ValueError(f"nesting deeper than {MAX_DEPTH}")
    return depth + 1


_TERM = {1: VARINT, 2: VARINT, 3: VARINT, 4: VARINT, 5: LEN, 6: VARINT,
         7: LEN, 8: LEN, 9: LEN, 10: LEN}


def _term(buf, ctx, depth, in_set=False):
    depth = _depth(depth)
    num, v = _oneof(buf, _TERM, "Term")
    if num is None:
        raise ValueError(f"block {ctx.index}: a term is empty")
    if num == 1:
        return ("variable", ctx.sym(_u32(v), "variable"))
    if num == 2:
        return ("integer", _i64(v))
    if num == 3:
        return ("string", ctx.sym(v, "string"))
    if num == 4:
        return ("date", v)
    if num == 5:
        return ("bytes", v)
    if num == 6:
        return ("bool", v != 0)
    if num == 8:
        _Msg(v, {}, "Empty")
        return ("null", None)
    if num == 7:
        kinds, seen, out = set(), set(), []
        for e in _Msg(v, {1: (LEN, "many")}, "TermSet").all(1):
            t = _term(e, ctx, depth, in_set=True)
            if t[0] in ("variable", "set"):
                raise ValueError(f"block {ctx.index}: a set cannot contain a {t[0]}")
            kinds.add(t[0])
            if len(kinds) > 1:
                raise ValueError(f"block {ctx.index}: a set's elements must have one type")
            k = repr(t)
            if k not in seen:
                seen.add(k)
                out.append(t)
        return ("set", out)
    if num == 9:
        return ("array", [_term(e, ctx, depth) for e in _Msg(v, {1: (LEN, "many")}, "Array").all(1)])
    # map
    entries = {}
    for e in _Msg(v, {1: (LEN, "many")}, "Map").all(1):
        m = _Msg(e, {1: (LEN, "msg"), 2: (LEN, "msg")}, "MapEntry")
        knum, kv = _oneof(m.get(1, b""), {1: VARINT, 2: VARINT}, "MapKey")
        if knum is None:
            raise ValueError(f"block {ctx.index}: a map key is empty")
        key = _i64(kv) if knum == 1 else ctx.sym(kv, "string")
        entries[(knum, key)] = _term(m.get(2, b""), ctx, depth)
    return ("map", [(k[1], t) for k, t in entries.items()])


def _is_v3_3_term(t):
    return t[0] == "null" or (t[0] == "set" and ("null", None) in t[1])


def _predicate(buf, ctx, depth):
    depth = _depth(depth)
    m = _Msg(buf, {1: (VARINT, "one"), 2: (LEN, "many")}, "Predicate")
    name = ctx.sym(m.get(1, 0), "predicate name")
    terms = [_term(t, ctx, depth) for t in m.all(2)]
    return (name, terms)


def _ops(bufs, ctx, depth, top):
    out = []
    for buf in bufs:
        d = _depth(depth)
        num, v = _oneof(buf, {1: LEN, 2: LEN, 3: LEN, 4: LEN}, "Op")
        if num is None:
            raise ValueError(f"block {ctx.index}: an operation is empty")
        if num == 1:
            t = _term(v, ctx, d)
            if top and _is_v3_3_term(t):
                ctx.v3_3 = True
            out.append(("value", t))
        elif num in (2, 3):
            names = UNARY if num == 2 else BINARY
            m = _Msg(v, {1: (VARINT, "one"), 2: (VARINT, "one")}, "OpUnary" if num == 2 else "OpBinary")
            kind = _i32(m.get(1, 0))
            ffi = m.get(2)
            if not 0 <= kind < len(names):
                raise ValueError(f"block {ctx.index}: unknown {'unary' if num == 2 else 'binary'} operation {kind}")
            name = names[kind]
            if (name == "ffi") != (ffi is not None):
                raise ValueError(f"block {ctx.index}: ffi name missing or set on a regular operation")
            if top and (kind in V3_1_BINARY if num == 3 else False):
                ctx.v3_1 = True
            if top and (kind in V3_3_BINARY if num == 3 else kind in (3, 4)):
                ctx.v3_3 = True
            out.append(("unary" if num == 2 else "binary", name,
                        ctx.sym(ffi, "ffi name") if ffi is not None else None))
        else:
            m = _Msg(v, {1: (VARINT, "packed"), 2: (LEN, "many")}, "OpClosure")
            if top:
                ctx.v3_3 = True
            params = [ctx.sym(_u32(p), "closure parameter") for p in m.all(1)]
            out.append(("closure", params, _ops(m.all(2), ctx, d, False)))
    return out


def _scope(buf, ctx):
    num, v = _oneof(buf, {1: VARINT, 2: VARINT}, "Scope")
    if num is None:
        raise ValueError(f"block {ctx.index}: a scope is empty")
    ctx.scoped = True
    if num == 1:
        t = _i32(v)
        if t == 0:
            return ("authority",)
        if t == 1:
            return ("previous",)
        raise ValueError(f"block {ctx.index}: unknown scope type {t}")
    return ("public_key", ctx.key(_i64(v) & 0xFFFFFFFFFFFFFFFF))


def _rule(buf, ctx, version, depth, is_rule):
    depth = _depth(depth)
    m = _Msg(buf, {1: (LEN, "msg"), 2: (LEN, "many"), 3: (LEN, "many"), 4: (LEN, "many")}, "Rule")
    head = _predicate(m.get(1, b""), ctx, depth)
    body = [_predicate(p, ctx, depth) for p in m.all(2)]
    exprs = []
    for e in m.all(3):
        em = _Msg(e, {1: (LEN, "many")}, "Expression")
        exprs.append(_ops(em.all(1), ctx, _depth(depth), True))
    if version < 4 and m.all(4):
        raise ValueError(f"block {ctx.index}: scopes need block version 4 or more")
    scopes = [_scope(s, ctx) for s in m.all(4)]
    if any(_is_v3_3_term(t) for p in body for t in p[1]) or (
            is_rule and any(_is_v3_3_term(t) for t in head[1])):
        ctx.v3_3 = True
    return Rule(head, body, exprs, scopes)


_BLOCK = {1: (LEN, "many"), 2: (LEN, "one"), 3: (VARINT, "one"), 4: (LEN, "many"),
          5: (LEN, "many"), 6: (LEN, "many"), 7: (LEN, "many"), 8: (LEN, "many")}


def _block(buf, index, signature, external_key, table):
    """Decodes one Block. `table` is the shared first-party table
    (symbols, keys), extended in place for a first-party block."""
    m = _Msg(buf, _BLOCK, "Block")
    version = _u32(m.get(3, 0))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"block {index}: version {version} is outside {MIN_VERSION}..{MAX_VERSION}")
    symbols = [_utf8(s, f"block {index}: a symbol") for s in m.all(1)]
    if m.get(2) is not None:
        _utf8(m.get(2), f"block {index}: the context")
    if set(symbols) & set(DEFAULT_SYMBOLS):
        raise ValueError(f"block {index}: its symbols repeat a default symbol")
    keys = []
    for k in m.all(8):
        key = _public_key(k, f"block {index}: a public key")
        if key in keys:
            raise ValueError(f"block {index}: a public key appears twice")
        keys.append(key)
    if external_key is None:
        tsyms, tkeys = table
        if set(tsyms) & set(symbols):
            raise ValueError(f"block {index}: its symbols repeat a symbol of an earlier block")
        if any(k in tkeys for k in keys):
            raise ValueError(f"block {index}: its public keys repeat an earlier block's")
        tsyms.extend(symbols)
        tkeys.extend(keys)
        ctx = _Ctx(tsyms, tkeys, index)
    else:
        if version < 5:
            raise ValueError(f"block {index}: third-party blocks need block version 5 or more")
        ctx = _Ctx(symbols, keys, index)
    facts = []
    for f in m.all(4):
        fm = _Msg(f, {1: (LEN, "msg")}, "Fact")
        fact = _predicate(fm.get(1, b""), ctx, 0)
        if any(_is_v3_3_term(t) for t in fact[1]):
            ctx.v3_3 = True
        facts.append(fact)
    rules = [_rule(r, ctx, version, 0, True) for r in m.all(5)]
    checks = []
    for c in m.all(6):
        cm = _Msg(c, {1: (LEN, "many"), 2: (VARINT, "one")}, "Check")
        kind = cm.get(2)
        if kind is not None:
            kind = _i32(kind)
            if version < 4:
                raise ValueError(f"block {index}: check kinds need block version 4 or more")
        if kind not in (None, 0, 1, 2):
            raise ValueError(f"block {index}: unknown check kind {kind}")
        if kind == 2:
            if version < 6:
                raise ValueError(f"block {index}: `reject if` needs block version 6")
            ctx.v3_3 = True
        queries = [_rule(q, ctx, version, 0, False) for q in cm.all(1)]
        checks.append(Check({None: "one", 0: "one", 1: "all", 2: "reject"}[kind], queries))
    scopes = [_scope(s, ctx) for s in m.all(7)]
    if version < 4 and (ctx.scoped or ctx.v3_1):
        raise ValueError(f"block {index}: scopes, bitwise operators and != need block version 4 or more")
    if version < 6 and ctx.v3_3:
        raise ValueError(f"block {index}: null, closures, `reject if` and these operations need block version 6")
    return Block(index, version, external_key, signature, symbols, keys, facts, rules, checks, scopes)


def decode_token(data):
    """Decodes a serialized Biscuit token (bytes) into a Token."""
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError("a token is bytes")
    if len(data) > MAX_TOKEN_BYTES:
        raise ValueError(f"token larger than {MAX_TOKEN_BYTES} bytes")
    data = bytes(data)
    top = _Msg(data, {1: (VARINT, "one"), 2: (LEN, "msg"), 3: (LEN, "many"), 4: (LEN, "msg")}, "Biscuit")
    root_key_id = _u32(top.get(1)) if top.get(1) is not None else None
    if top.get(4) is None:
        raise ValueError("the token has no proof")
    pnum, _ = _oneof(top.get(4), {1: LEN, 2: LEN}, "Proof")
    if pnum is None:
        raise ValueError("the token has no proof")
    signed = [top.get(2, b"")] + top.all(3)
    if len(signed) > MAX_BLOCKS:
        raise ValueError(f"the token has {len(signed)} blocks, more than {MAX_BLOCKS}")
    table = ([], [])
    blocks = []
    for index, sb in enumerate(signed):
        m = _Msg(sb, {1: (LEN, "one"), 2: (LEN, "msg"), 3: (LEN, "one"), 4: (LEN, "msg"), 5: (VARINT, "one")},
                 "SignedBlock")
        _public_key(m.get(2, b""), f"block {index}: the next key")
        ext = None
        if m.get(4) is not None:
            if index == 0:
                raise ValueError("the authority block must not carry an external signature")
            if _u32(m.get(5, 0)) != 1:
                raise ValueError(f"block {index}: a third-party block must have signature version 1")
            em = _Msg(m.get(4), {1: (LEN, "one"), 2: (LEN, "msg")}, "ExternalSignature")
            ext = _public_key(em.get(2, b""), f"block {index}: the external signer key")
        signature = m.get(3, b"")
        blocks.append(_block(m.get(1, b""), index, signature.hex(), ext, table))
    return Token(root_key_id, blocks)


def chain_facts(token):
    """Per block, the Mandate facts (SPEC §2.2) it holds, well typed only."""
    out = []
    for b in token.blocks:
        d = {k: [] for k in ("token", "principal", "issued_at", "max_depth", "agent", "purpose", "approval")}
        for name, terms in b.facts:
            types = [t[0] for t in terms]
            vals = [t[1] for t in terms]
            if name in ("token", "principal", "purpose") and types == ["string"]:
                d[name].append(vals[0])
            elif name == "issued_at" and types == ["date"]:
                d[name].append(vals[0])
            elif name == "max_depth" and types == ["integer"]:
                d[name].append(vals[0])
            elif name == "agent" and types == ["string", "bytes"]:
                d[name].append((vals[0], vals[1]))
            elif name == "approval" and types == ["bytes", "date"]:
                d[name].append((vals[0], vals[1]))
        out.append(d)
    return out


def read_token_text(text):
    """URL-safe base64 text (padding optional, whitespace trimmed) to bytes;
    bytes that are not such text are returned unchanged (raw token)."""
    if isinstance(text, str):
        raw = text.encode("utf-8", "surrogateescape")
    else:
        raw = bytes(text)
    s = raw.strip()
    if s and all(c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=" for c in s):
        if len(s) > MAX_TEXT_CHARS:
            raise ValueError(f"token larger than {MAX_TOKEN_BYTES} bytes")
        s = s.rstrip(b"=")
        try:
            return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None
    if isinstance(text, str):
        raise ValueError("not URL-safe base64 text")
    return raw


def _json(x):
    if isinstance(x, (bytes, bytearray)):
        return x.hex()
    if isinstance(x, (list, tuple)):
        return [_json(e) for e in x]
    if isinstance(x, (Token, Block, Rule, Check)):
        return {k: _json(v) for k, v in vars(x).items()}
    return x


def to_json(token):
    """A JSON-ready view of a Token (bytes as hex)."""
    return _json(token)


def main(argv):
    if len(argv) != 2:
        print("usage: mandate_wire.py FILE  (base64 text or raw bytes; - for stdin)", file=sys.stderr)
        return 2
    try:
        raw = sys.stdin.buffer.read() if argv[1] == "-" else open(argv[1], "rb").read(MAX_TEXT_CHARS + 4096)
        token = decode_token(read_token_text(raw))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(to_json(token), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
