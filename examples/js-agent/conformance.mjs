// Replays Mandate's conformance vectors (spec/samples/vectors.json, written by
// the seeded generator in tests/src/conformance) with the standard Biscuit
// library for Node (@biscuit-auth/biscuit-wasm 0.6) alone, and checks what
// that library can check:
//
//   1. base64: a byte token's `token` text (URL-safe base64, padding
//      optional) decodes to exactly the bytes of its `token_file`;
//   2. signatures: parsing the bytes under the trusted root key the token's
//      container names (else root key 0) succeeds iff `biscuit_accepts`.
//      The key is chosen by biscuit-wasm's own provider callback, which
//      receives the container's root key id (protobuf field 1 of the
//      Biscuit message); a tiny varint reader here reads the same field
//      and must agree (`root key id` line);
//   3. datalog: for each request carrying `datalog_allows`, an authorizer
//      with the request facts of SPEC §2.1 (every value a parameter, never
//      string-formatted), `allow if true` and the vectors' limits decides
//      as recorded;
//   4. chain: for cases with an `inspect` answer, the chain read from the
//      blocks' printed Datalog (agent facts, purpose, token, principal,
//      max_depth) matches it.
//
// Run with: node --experimental-wasm-modules --no-warnings conformance.mjs [spec/samples]
// It prints one line per check, `checked <name>: N ok, M mismatched, K skipped (reasons)`,
// each mismatch before it, and exits 1 on any mismatch.
//
// Skipped, and counted: requests of cases covering "int64-extreme" (JSON.parse
// turns integers beyond ±2^53 into inexact doubles; this runner does not parse
// them precisely), and chain cases where a compared string contains `"` or `\`
// (biscuit-wasm prints strings without escaping them: SPEC §7.1, Appendix B).

import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// biscuit-wasm writes a line to standard output when it loads; the summary
// goes there, so its log goes to stderr.
const log = console.log;
console.log = (...args) => console.error(...args);
const { Biscuit, AuthorizerBuilder, PublicKey, SignatureAlgorithm } = await import(
  "@biscuit-auth/biscuit-wasm"
);

const here = dirname(fileURLToPath(import.meta.url));
const samples = resolve(process.argv[2] ?? join(here, "../../spec/samples"));
const vectors = JSON.parse(readFileSync(join(samples, "vectors.json"), "utf8"));
if (vectors.format !== "mandate-conformance/1") {
  process.stderr.write(`error: unknown vectors format ${vectors.format}\n`);
  process.exit(2);
}
const verifier = vectors.verifier;
const rootKeys = new Map(
  verifier.root_keys.map((k) => {
    const [alg, hex] = k.public_key.split("/");
    if (alg !== "ed25519") throw new Error(`root key ${k.id}: not Ed25519`);
    return [k.id, hex];
  }),
);
// A fresh PublicKey per use: the provider callback's result is moved into
// the library (the JS object is emptied), so one cannot be handed twice.
const rootKey = (id) => PublicKey.fromString(rootKeys.get(id), SignatureAlgorithm.Ed25519);
const limits = {
  max_facts: verifier.limits.max_facts,
  max_iterations: verifier.limits.max_iterations,
  max_time_micro: verifier.limits.max_time_ms * 1000,
};

// One tally per check.
function tally(name) {
  return { name, ok: 0, mismatched: 0, skipped: new Map() };
}
const checks = {
  base64: tally("base64"),
  signatures: tally("signatures"),
  rootKeyId: tally("root key id"),
  datalog: tally("datalog"),
  chain: tally("chain"),
};
function skip(t, reason) {
  t.skipped.set(reason, (t.skipped.get(reason) ?? 0) + 1);
}
function mismatch(t, c, where, expected, got) {
  t.mismatched++;
  log(
    `MISMATCH ${t.name}: case ${c.id} ${c.name}${where}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(got)}`,
  );
}
function compare(t, c, where, expected, got) {
  if (JSON.stringify(expected) === JSON.stringify(got)) t.ok++;
  else mismatch(t, c, where, expected, got);
}

// URL-safe base64, padding optional; anything else is not a byte token.
function base64url(text) {
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(text) || text.replace(/=+$/, "").length % 4 === 1) return null;
  return new Uint8Array(Buffer.from(text, "base64url"));
}

// Field 1 (root key id, varint) of the top-level Biscuit message, if it is
// there: the fields of a prost message are written in field order, so it is
// the first key when present.
function rootKeyIdField(bytes) {
  if (bytes.length === 0 || bytes[0] !== 0x08) return null;
  let value = 0n;
  for (let i = 1, shift = 0n; i < bytes.length && i < 11; i++, shift += 7n) {
    value |= BigInt(bytes[i] & 0x7f) << shift;
    if ((bytes[i] & 0x80) === 0) return Number(value & 0xffffffffn);
  }
  return undefined; // a truncated varint
}

// Parses under the trusted key the container names, else root key 0.
function parse(bytes) {
  let named;
  try {
    const token = Biscuit.fromBytesWithProvider(bytes, (id) => {
      named = id;
      return rootKey(rootKeys.has(id ?? 0) ? (id ?? 0) : 0);
    });
    return { token, named };
  } catch (error) {
    if (error instanceof WebAssembly.RuntimeError) throw error; // a panic, not a refusal
    return { token: null, named, error };
  }
}

function rfc3339(unixSeconds) {
  return new Date(unixSeconds * 1000).toISOString().replace(/\.\d+Z$/, "Z");
}

// The request facts of SPEC §2.1, as parameterised Datalog.
function requestFacts(request) {
  const params = {
    operation: request.action,
    resource: request.resource,
    time: { date: rfc3339(request.time) },
  };
  const lines = ["operation({operation});", "resource({resource});", "time({time});"];
  const slash = request.resource.lastIndexOf("/");
  const name = request.resource.slice(slash + 1);
  if (request.resource.startsWith("/") && name !== "") {
    lines.push("resource({dir}, {name});");
    params.dir = request.resource.slice(0, slash + 1);
    params.name = name;
  }
  Object.entries(request.params ?? {}).forEach(([n, value], i) => {
    if (!(typeof value === "string" || Number.isSafeInteger(value))) {
      throw new Error(`parameter ${n}: neither a string nor a safe integer: ${value}`);
    }
    lines.push(`param({p${i}name}, {p${i}value});`);
    params[`p${i}name`] = n;
    params[`p${i}value`] = value;
  });
  lines.push("allow if true;");
  return { source: lines.join("\n"), params };
}

function allows(token, request) {
  const { source, params } = requestFacts(request);
  const builder = new AuthorizerBuilder();
  builder.addCodeWithParameters(source, params, {});
  let authorizer;
  try {
    authorizer = builder.buildAuthenticated(token);
    authorizer.authorizeWithLimits(limits);
    return true;
  } catch (error) {
    if (error instanceof WebAssembly.RuntimeError) throw error;
    return false;
  } finally {
    authorizer?.free(); // buildAuthenticated consumed the builder
  }
}

// The chain as the blocks' printed Datalog shows it (SPEC §10.1).
const AGENT = /^agent\("(.*)", hex:([0-9a-f]{64})\);$/;
const PURPOSE = /^purpose\("(.*)"\);$/;
const TOKEN = /^token\("(.*)"\);$/;
const PRINCIPAL = /^principal\("(.*)"\);$/;
const MAX_DEPTH = /^max_depth\((\d+)\);$/;
function readChain(token) {
  const hops = [];
  const root = { token_id: null, principal: null, max_depth: null };
  for (let b = 0; b < token.countBlocks(); b++) {
    let hop = null;
    let purpose = null;
    for (const line of token.getBlockSource(b).split("\n")) {
      let m;
      if ((m = line.match(AGENT))) hop = { block: b, agent: m[1], agent_key: `ed25519/${m[2]}` };
      else if ((m = line.match(PURPOSE))) purpose = m[1];
      else if (b === 0 && (m = line.match(TOKEN))) root.token_id = m[1];
      else if (b === 0 && (m = line.match(PRINCIPAL))) root.principal = m[1];
      else if (b === 0 && (m = line.match(MAX_DEPTH))) root.max_depth = Number(m[1]);
    }
    if (hop) hops.push({ ...hop, purpose });
  }
  return { ...root, hops };
}
function expectedChain(inspect) {
  const c = inspect.chain;
  return {
    token_id: c.token_id,
    principal: c.principal,
    max_depth: c.max_depth ?? null,
    hops: c.hops.map((h) => ({
      block: h.block,
      agent: h.agent,
      agent_key: h.agent_key,
      purpose: h.purpose ?? null,
    })),
  };
}
function ambiguous(chain) {
  const strings = [chain.token_id, chain.principal, ...chain.hops.flatMap((h) => [h.agent, h.purpose])];
  return strings.some((s) => typeof s === "string" && /["\\]/.test(s));
}

for (const c of vectors.cases) {
  const extreme = c.covers.includes("int64-extreme");
  let token = null;
  if (c.token_file !== undefined) {
    const bytes = new Uint8Array(readFileSync(join(samples, c.token_file)));
    // 1. The text is the bytes.
    const decoded = base64url(c.token.trim());
    compare(checks.base64, c, "", Buffer.from(bytes).toString("hex"), decoded && Buffer.from(decoded).toString("hex"));
    // 2. Biscuit's own verdict on the signatures.
    const parsed = parse(bytes);
    token = parsed.token;
    compare(checks.signatures, c, "", c.biscuit_accepts, token !== null);
    const field = rootKeyIdField(bytes);
    if (parsed.named === undefined || field === undefined) skip(checks.rootKeyId, "container not read");
    else compare(checks.rootKeyId, c, " (provider vs varint reader)", field, parsed.named);
  } else {
    skip(checks.base64, "text case without token_file");
    skip(checks.signatures, "text case without token_file");
    skip(checks.rootKeyId, "text case without token_file");
  }
  // 3. A plain Biscuit authorizer's decision, request by request.
  c.requests.forEach((r, i) => {
    if (r.datalog_allows === undefined) return;
    if (extreme) return skip(checks.datalog, "int64-extreme");
    if (token === null) return mismatch(checks.datalog, c, ` request ${i}`, r.datalog_allows, "token not parsed");
    compare(checks.datalog, c, ` request ${i} ${JSON.stringify(r.request)}`, r.datalog_allows, allows(token, r.request));
  });
  // 4. The chain, as printed Datalog shows it.
  if (c.inspect) {
    const expected = expectedChain(c.inspect);
    if (ambiguous(expected)) skip(checks.chain, "quote or backslash in a string");
    else if (token === null) mismatch(checks.chain, c, "", expected, "token not parsed");
    else compare(checks.chain, c, "", expected, readChain(token));
  }
  token?.free();
}

let failed = false;
for (const t of Object.values(checks)) {
  const skipped = [...t.skipped.values()].reduce((a, b) => a + b, 0);
  const reasons = [...t.skipped].map(([r, n]) => `${n} ${r}`).join("; ");
  log(`checked ${t.name}: ${t.ok} ok, ${t.mismatched} mismatched, ${skipped} skipped${reasons ? ` (${reasons})` : ""}`);
  if (t.mismatched) failed = true;
}
process.exit(failed ? 1 : 0);
