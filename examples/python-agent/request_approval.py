"""A Python agent asks a person to approve one request, waits, and attaches
the approval to its own token (SPEC §14; SERVICE.md S3 Approvals): it files
the request with its own token at the issuer service (POST /v1/approvals),
long-polls GET /v1/approvals/{id}?wait=30s until a person decides, and on
approval appends the approval block the service signed to its token. The
approved token goes to standard output; the verifier allows it once.

Run with:
    python request_approval.py --service http://127.0.0.1:8080 --token pay.tok \
        --action pay --resource /api/payments --param amount=150 --wait 120 \
        [--root-public-key ed25519/…] > approved.tok

Exit 0 approved, 1 denied (the approver's reason on standard error), 3 still
pending when the wait ends (the id on standard error), 2 bad input.

Gap (spec §10.1): biscuit-python 0.4 cannot read a third-party block it did
not create (ThirdPartyBlock has no from_base64), so the approval block is
appended at the wire level (SPEC Appendix B: the Biscuit container, and
biscuit's block signature version 1) with mandate_wire's protobuf reader and
an Ed25519 signature by the token's next key (RFC 8032, below). With
--root-public-key, biscuit-python then verifies the approved token.
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mandate_wire as wire  # noqa: E402


def die(message, code=2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def text(s):
    """What the service sent, shown as text: no control characters."""
    return "".join(c if c.isprintable() else "?" for c in str(s))[:500]


# --- the issuer service's approval routes ---------------------------------

def call(method, url, token=None, body=None, timeout=10):
    """(status, JSON answer or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read(1 << 20) or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read(1 << 20) or b"null")
        except ValueError:
            return e.code, None


def file_request(service, token, request):
    status, answer = call("POST", f"{service}/v1/approvals", token, request)
    if status == 201:
        return answer["id"]
    reason = (answer or {}).get("error", "")
    if status == 403:
        die(f"denied: {text(reason)}", 1)
    die(f"the service refused to file it ({status}): {text(reason)}")


def wait_for(service, request_id, deadline):
    """The decided record, or None when the deadline passes first."""
    pause = 0.1
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        wait = max(1, min(30, int(left)))
        asked = time.monotonic()
        try:
            status, record = call("GET", f"{service}/v1/approvals/{request_id}?wait={wait}s",
                                  timeout=wait + 10)
        except (urllib.error.URLError, OSError):
            status, record = 0, None
        if status == 200 and record["status"] != "pending":
            return record
        if status == 200 and time.monotonic() - asked >= wait / 2:
            continue  # held as asked: ask again at once
        time.sleep(min(pause, max(0, deadline - time.monotonic())))
        pause = min(pause * 2, 2)


# --- Ed25519 (RFC 8032 §5.1), for the token's next key --------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa, bb = (y1 - x1) * (y2 - x2) % P, (y1 + x1) * (y2 + x2) % P
    cc, dd = t1 * 2 * D * t2 % P, z1 * 2 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s, pt):
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, pt)
        pt = _add(pt, pt)
        s >>= 1
    return q


def _encode(pt):
    x, y, z, _ = pt
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


_GY = 4 * pow(5, P - 2, P) % P
_GX2 = (_GY * _GY - 1) * pow(D * _GY * _GY + 1, P - 2, P) % P
_GX = pow(_GX2, (P + 3) // 8, P)
if (_GX * _GX - _GX2) % P:
    _GX = _GX * SQRT_M1 % P
if _GX & 1:
    _GX = P - _GX
G = (_GX, _GY, 1, _GX * _GY % P)


def _sha512_int(*parts):
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def _secret(seed):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def public_key(seed):
    return _encode(_mul(_secret(seed)[0], G))


def sign(seed, message):
    a, prefix = _secret(seed)
    pub = _encode(_mul(a, G))
    r = _sha512_int(prefix, message) % L
    big_r = _encode(_mul(r, G))
    k = _sha512_int(big_r, pub, message) % L
    return big_r + int.to_bytes((r + k * a) % L, 32, "little")


# --- appending the approval block (SPEC Appendix B; biscuit signature v1) --

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len_field(num, data):
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _public_key_msg(key):
    return _varint(1 << 3) + _varint(0) + _len_field(2, key)  # Ed25519 = 0


def attach_approval(token, block_b64):
    """The token with the approval block (ThirdPartyBlockContents, base64)
    appended as a third-party block, signed by the token's next key."""
    contents = {n: v for n, _, v in wire._fields(base64.urlsafe_b64decode(block_b64 + "=" * (-len(block_b64) % 4)))}
    payload, external = contents[1], contents[2]
    ext = {n: v for n, _, v in wire._fields(external)}
    external_signature = ext[1]
    fields = wire._fields(token)
    signed = [v for n, _, v in fields if n in (2, 3)]
    previous_signature = {n: v for n, _, v in wire._fields(signed[-1])}[3]
    proof = {n: v for n, _, v in wire._fields([v for n, _, v in fields if n == 4][-1])}
    if 1 not in proof:
        die("the token is sealed: nothing can be appended to it")
    current = proof[1]
    next_seed = os.urandom(32)
    next_key = public_key(next_seed)
    to_sign = (b"\0BLOCK\0\0VERSION\0" + (1).to_bytes(4, "little")
               + b"\0PAYLOAD\0" + payload
               + b"\0ALGORITHM\0" + (0).to_bytes(4, "little")
               + b"\0NEXTKEY\0" + next_key
               + b"\0PREVSIG\0" + previous_signature
               + b"\0EXTERNALSIG\0" + external_signature)
    block = (_len_field(1, payload) + _len_field(2, _public_key_msg(next_key))
             + _len_field(3, sign(current, to_sign)) + _len_field(4, external)
             + _varint(5 << 3) + _varint(1))
    # The container again: every field but the proof, the new block, the
    # new proof (the next key's secret).
    out = bytearray()
    pos = 0
    for n, wt, v in fields:
        start = pos
        key, pos = wire._varint(token, pos)
        if wt == 0:
            _, pos = wire._varint(token, pos)
        else:
            length, pos = wire._varint(token, pos)
            pos += length
        if n != 4:
            out += token[start:pos]
    out += _len_field(3, block) + _len_field(4, _len_field(1, next_seed))
    return bytes(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--service", required=True, help="the issuer service, http://HOST:PORT")
    ap.add_argument("--token", required=True, help="this agent's token file")
    ap.add_argument("--action", required=True)
    ap.add_argument("--resource", required=True)
    ap.add_argument("--param", action="append", default=[], help="NAME=VALUE (integers as such)")
    ap.add_argument("--wait", type=int, default=120, help="seconds to wait for a person")
    ap.add_argument("--root-public-key", help="verify the approved token with biscuit-python")
    a = ap.parse_args()
    service = a.service.rstrip("/")
    if not service.startswith("http://"):
        die("--service: expected http://HOST:PORT")
    token_text = open(a.token, encoding="utf-8").read().strip()
    params = {}
    for p in a.param:
        name, sep, value = p.partition("=")
        if not sep:
            die(f"--param expects NAME=VALUE, got {p!r}")
        params[name] = int(value) if value.lstrip("-").isdigit() and str(int(value)) == value else value
    request = {"action": a.action, "resource": a.resource, "params": params}

    request_id = file_request(service, token_text, request)
    print(f"approval requested: {request_id}; waiting up to {a.wait}s", file=sys.stderr)
    record = wait_for(service, request_id, time.monotonic() + a.wait)
    if record is None:
        print(f"still pending (id {request_id})", file=sys.stderr)
        sys.exit(3)
    if record["status"] == "denied":
        print(f"denied by {text(record.get('decided_by', ''))}: "
              f"{text(record.get('denied_because', ''))} (approval request {request_id})",
              file=sys.stderr)
        sys.exit(1)
    approved = attach_approval(wire.read_token_text(token_text), record["approval_block"])
    approved_text = base64.urlsafe_b64encode(approved).decode()
    if a.root_public_key:
        from biscuit_auth import Biscuit, PublicKey
        Biscuit.from_base64(approved_text, PublicKey(a.root_public_key))
    print(f"approved by {text(record.get('decided_by', ''))}", file=sys.stderr)
    print(approved_text)


if __name__ == "__main__":
    main()
