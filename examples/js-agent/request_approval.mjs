// A JavaScript agent asks a person to approve one request, waits, and
// attaches the approval to its own token (SPEC §14; SERVICE.md S3
// Approvals): it files the request with its own token at the issuer service
// (POST /v1/approvals), long-polls GET /v1/approvals/{id}?wait=30s until a
// person decides, and on approval appends the approval block the service
// signed to its token. The approved token goes to standard output; the
// verifier allows it once.
//
// Run with:
//   npm ci
//   node --experimental-wasm-modules request_approval.mjs \
//     --service http://127.0.0.1:8080 --token pay.tok --action pay \
//     --resource /api/payments --param amount=150 --wait 120 \
//     --root-public-key ed25519/… > approved.tok
//
// Exit 0 approved, 1 denied (the approver's reason on standard error), 3
// still pending when the wait ends (the id on standard error), 2 bad input.
//
// Gap (spec §10.1): biscuit-wasm 0.6's ThirdPartyBlock.fromBase64 reads a
// third-party *request*, not a block, so a block signed elsewhere cannot be
// appended with appendThirdPartyBlock. The approval block is appended at the
// wire level (SPEC Appendix B: the Biscuit container, biscuit's block
// signature version 1) with Node's Ed25519, and biscuit-wasm then parses the
// approved token with the root public key (its signatures checked).

import { createPrivateKey, generateKeyPairSync, sign } from "node:crypto";
import { readFileSync } from "node:fs";

// biscuit-wasm logs "biscuit-wasm loading" to standard output when it loads;
// standard output is where the token goes, so its log goes to stderr.
console.log = (...args) => console.error(...args);
const { Biscuit, PublicKey, SignatureAlgorithm } = await import("@biscuit-auth/biscuit-wasm");

function die(message, code = 2) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

/** What the service sent, shown as text: no control characters. */
const text = (s) => String(s ?? "").replace(/[\p{Cc}\p{Cf}]/gu, "?").slice(0, 500);

function args(argv) {
  const out = { param: [], wait: "120" };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, "").replaceAll("-", "_");
    if (argv[i + 1] === undefined) die(`${argv[i]} needs a value`);
    if (name === "param") out.param.push(argv[i + 1]);
    else out[name] = argv[i + 1];
  }
  for (const required of ["service", "token", "action", "resource", "root_public_key"]) {
    if (!out[required]) die(`--${required.replaceAll("_", "-")} is required`);
  }
  return out;
}

// --- the issuer service's approval routes --------------------------------

async function call(method, url, token, body, timeoutMs = 10_000) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const resp = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  let json = null;
  try {
    json = await resp.json();
  } catch {}
  return [resp.status, json];
}

async function waitFor(service, id, deadline) {
  let pause = 100;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return null;
    const wait = Math.max(1, Math.min(30, Math.floor(left / 1000)));
    const asked = Date.now();
    let status = 0;
    let record = null;
    try {
      [status, record] = await call("GET", `${service}/v1/approvals/${id}?wait=${wait}s`, null, undefined, (wait + 10) * 1000);
    } catch {}
    if (status === 200 && record.status !== "pending") return record;
    if (status === 200 && Date.now() - asked >= (wait * 1000) / 2) continue; // held as asked
    await new Promise((r) => setTimeout(r, Math.min(pause, Math.max(0, deadline - Date.now()))));
    pause = Math.min(pause * 2, 2000);
  }
}

// --- appending the approval block (SPEC Appendix B; biscuit signature v1) -

function readVarint(buf, pos) {
  let result = 0n;
  for (let shift = 0n; ; shift += 7n) {
    if (pos >= buf.length) throw new Error("truncated varint");
    const b = buf[pos++];
    result |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return [result, pos];
  }
}

/** Each field of a message: { num, start, end, value (bytes for LEN) }. */
function fields(buf) {
  const out = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    let key;
    [key, pos] = readVarint(buf, pos);
    const num = Number(key >> 3n);
    const wt = Number(key & 7n);
    let value = null;
    if (wt === 0) [, pos] = readVarint(buf, pos);
    else if (wt === 2) {
      let n;
      [n, pos] = readVarint(buf, pos);
      value = buf.subarray(pos, pos + Number(n));
      pos += Number(n);
      if (pos > buf.length) throw new Error("truncated field");
    } else throw new Error(`unsupported wire type ${wt}`);
    out.push({ num, start, end: pos, value });
  }
  return out;
}

const last = (fs, num) => fs.filter((f) => f.num === num).at(-1)?.value;

function varint(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    out.push(b | (n ? 0x80 : 0));
  } while (n);
  return Buffer.from(out);
}

const lenField = (num, data) => Buffer.concat([varint((num << 3) | 2), varint(data.length), data]);
const publicKeyMsg = (key) => Buffer.concat([varint(1 << 3), varint(0), lenField(2, key)]); // Ed25519 = 0

/** The token with the approval block (ThirdPartyBlockContents, base64) appended
 * as a third-party block, signed by the token's next key. */
function attachApproval(token, blockB64) {
  const contents = fields(Buffer.from(blockB64, "base64url"));
  const payload = last(contents, 1);
  const external = last(contents, 2);
  const externalSignature = last(fields(external), 1);
  const top = fields(token);
  const signed = top.filter((f) => f.num === 2 || f.num === 3);
  const previousSignature = last(fields(signed.at(-1).value), 3);
  const proof = fields(last(top, 4));
  const current = last(proof, 1);
  if (!current) die("the token is sealed: nothing can be appended to it");
  // PKCS#8 of an Ed25519 seed (RFC 8410).
  const key = createPrivateKey({
    key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), current]),
    format: "der",
    type: "pkcs8",
  });
  const next = generateKeyPairSync("ed25519");
  const nextSeed = next.privateKey.export({ format: "der", type: "pkcs8" }).subarray(-32);
  const nextKey = next.publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const le32 = (n) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  const toSign = Buffer.concat([
    Buffer.from("\0BLOCK\0\0VERSION\0"), le32(1),
    Buffer.from("\0PAYLOAD\0"), payload,
    Buffer.from("\0ALGORITHM\0"), le32(0),
    Buffer.from("\0NEXTKEY\0"), nextKey,
    Buffer.from("\0PREVSIG\0"), previousSignature,
    Buffer.from("\0EXTERNALSIG\0"), externalSignature,
  ]);
  const block = Buffer.concat([
    lenField(1, payload),
    lenField(2, publicKeyMsg(nextKey)),
    lenField(3, sign(null, toSign, key)),
    lenField(4, external),
    varint(5 << 3),
    varint(1),
  ]);
  // The container again: every field but the proof, the new block, the new
  // proof (the next key's secret).
  const kept = top.filter((f) => f.num !== 4).map((f) => token.subarray(f.start, f.end));
  return Buffer.concat([...kept, lenField(3, block), lenField(4, lenField(1, nextSeed))]);
}

const a = args(process.argv.slice(2));
const service = a.service.replace(/\/+$/, "");
if (!service.startsWith("http://")) die("--service: expected http://HOST:PORT");
const [alg, rootHex] = a.root_public_key.split("/");
if (alg !== "ed25519" || !/^[0-9a-f]{64}$/.test(rootHex ?? "")) die("--root-public-key: ed25519/<hex>");
const root = PublicKey.fromString(rootHex, SignatureAlgorithm.Ed25519);
const tokenText = readFileSync(a.token, "utf8").trim();
Biscuit.fromBase64(tokenText, root); // the token itself verifies
const params = {};
for (const p of a.param) {
  const i = p.indexOf("=");
  if (i < 1) die(`--param expects NAME=VALUE, got ${JSON.stringify(p)}`);
  const value = p.slice(i + 1);
  params[p.slice(0, i)] = /^-?(0|[1-9]\d*)$/.test(value) && Number.isSafeInteger(Number(value)) ? Number(value) : value;
}

const [status, filed] = await call("POST", `${service}/v1/approvals`, tokenText, {
  action: a.action,
  resource: a.resource,
  params,
});
if (status === 403) die(`denied: ${text(filed?.error)}`, 1);
if (status !== 201) die(`the service refused to file it (${status}): ${text(filed?.error)}`);
const id = filed.id;
process.stderr.write(`approval requested: ${id}; waiting up to ${a.wait}s\n`);
const record = await waitFor(service, id, Date.now() + Number(a.wait) * 1000);
if (record === null) {
  process.stderr.write(`still pending (id ${id})\n`);
  process.exit(3);
}
if (record.status === "denied") {
  process.stderr.write(
    `denied by ${text(record.decided_by)}: ${text(record.denied_because)} (approval request ${id})\n`,
  );
  process.exit(1);
}
const approved = attachApproval(Buffer.from(tokenText, "base64url"), record.approval_block).toString("base64url");
Biscuit.fromBase64(approved, root); // biscuit-wasm checks every signature
process.stderr.write(`approved by ${text(record.decided_by)}\n`);
process.stdout.write(`${approved}\n`);
