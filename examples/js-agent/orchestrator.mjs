// A JavaScript orchestrator agent in a Mandate delegation chain, written with
// the standard Biscuit library for Node (@biscuit-auth/biscuit-wasm 0.6) and
// Mandate's specification alone (spec/SPEC.md §10): it receives a token
// delegated to it, reads the chain, and appends a delegation hop for a
// sub-agent — a third-party block signed with its own key, naming the
// sub-agent and its key, a grant encoded as the canonical check of §4.1, an
// expiry no later than the chain's, and a purpose; optionally usage limits
// (§18) that the sub-agent and everything it delegates share. The new token
// goes to standard output, for the sub-agent.
//
// Run with:
//   npm ci
//   node --experimental-wasm-modules orchestrator.mjs --token orchestrator.tok \
//     --root-public-key ed25519/… --key orchestrator.key --to research-agent \
//     --to-key ed25519/… --allow 'read:/api/customers/*' --where 'rows<=10' \
//     --ttl 600 --purpose 'summarise customer 42' --limit 'read 5/1h' > research.tok
//
// Gaps (spec §10.1): biscuit-wasm 0.6 loads its WebAssembly as an ES module
// import, which Node 20 needs `--experimental-wasm-modules` for; it writes a
// line to standard output when it loads; parameters of another type than it
// expects make it panic (bytes go as { bytes: hex }, dates as { date }); it
// parses a
// token only with the root public key, and does not expose a block's
// external (signer) key, so this agent reads the chain from the `agent` facts
// and leaves signer checks to the verifier.

import { readFileSync } from "node:fs";

// biscuit-wasm logs "biscuit-wasm loading" to standard output when it loads;
// standard output is where the new token goes, so its log goes to stderr.
console.log = (...args) => console.error(...args);
const { Biscuit, BlockBuilder, KeyPair, PrivateKey, PublicKey, SignatureAlgorithm } = await import(
  "@biscuit-auth/biscuit-wasm"
);

const AGENT = /^agent\("((?:[^"\\]|\\.)*)", hex:([0-9a-f]{64})\);$/gm;
const EXPIRY = /\$time <= (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)/g;
const MAX_DEPTH = /^max_depth\((\d+)\);$/m;
const NAME = /^[A-Za-z0-9_.:\-]{1,256}$/;
// §18.1: `ACTION[,ACTION…] N/WINDOW` (count), `ACTION[,ACTION…] PARAM N/WINDOW` (budget).
const LIMIT = /^([A-Za-z0-9_.:\-]+(?:,[A-Za-z0-9_.:\-]+)*)(?:\s+([A-Za-z0-9_.:\-]+))?\s+([1-9]\d*)\/([1-9]\d*)([smhd])$/;
const UNIT = { s: 1, m: 60, h: 3600, d: 86400 };

function die(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

function args(argv) {
  const out = { where: [], limit: [], budget: [] };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, "").replace(/-/g, "_");
    if (argv[i + 1] === undefined) die(`${argv[i]} needs a value`);
    if (Array.isArray(out[name])) out[name].push(argv[i + 1]);
    else out[name] = argv[i + 1];
  }
  for (const required of ["token", "root_public_key", "key", "to", "to_key", "allow"]) {
    if (!out[required]) die(`--${required.replace(/_/g, "-")} is required`);
  }
  return out;
}

function publicKey(text) {
  const [alg, hex] = text.split("/");
  if (alg !== "ed25519" || !/^[0-9a-f]{64}$/.test(hex ?? "")) die(`not an Ed25519 public key: ${text}`);
  return PublicKey.fromString(hex, SignatureAlgorithm.Ed25519);
}

// biscuit-wasm takes a bytes parameter as { bytes: "<hex>" }, a date as
// { date: "<RFC 3339>" } and a set as { set: [...] }.
function keyBytes(key) {
  const out = new Uint8Array(32);
  key.toBytes(out);
  return { bytes: Buffer.from(out).toString("hex") };
}

// Step 1 of §10: who holds the token, its earliest expiry, the depth.
function readChain(token) {
  const agents = [];
  const expiries = [];
  let maxDepth = null;
  for (let i = 0; i < token.countBlocks(); i++) {
    const source = token.getBlockSource(i);
    for (const m of source.matchAll(AGENT)) agents.push({ id: m[1], key: `ed25519/${m[2]}` });
    for (const m of source.matchAll(EXPIRY)) expiries.push(new Date(m[1]));
    const d = source.match(MAX_DEPTH);
    if (i === 0 && d) maxDepth = Number(d[1]);
  }
  if (agents.length === 0) die("no agent in the token: not a Mandate token");
  return {
    holder: agents[agents.length - 1],
    depth: agents.length - 1,
    maxDepth,
    expires: expiries.length ? new Date(Math.min(...expiries)) : null,
  };
}

// §4.1, as parameterised Datalog: every value goes in as a parameter.
function canonicalCheck(allow, wheres) {
  const colon = allow.indexOf(":");
  if (colon < 0) die("--allow is ACTION[,ACTION…]:PATTERN");
  const actions = allow.slice(0, colon).split(",").map((a) => a.trim()).sort();
  const pattern = allow.slice(colon + 1);
  for (const a of actions) if (!NAME.test(a)) die(`action ${a}: letters, digits and _ . : - only`);
  const body = ["time($time)"];
  const exprs = ["$time <= {expiry}"];
  const params = {};
  if (actions.length === 1) {
    body.push("operation({action})");
    params.action = actions[0];
  } else {
    body.push("operation($operation)");
    exprs.push("{actions}.contains($operation)");
    params.actions = { set: actions };
  }
  if (pattern.endsWith("/**")) {
    body.push("resource($resource)");
    exprs.push("$resource.starts_with({dir})");
    params.dir = pattern.slice(0, -2);
  } else if (pattern.endsWith("/*")) {
    body.push("resource({dir}, $resource)");
    params.dir = pattern.slice(0, -1);
  } else {
    body.push("resource({resource})");
    params.resource = pattern;
  }
  wheres.forEach((w, n) => {
    const m = w.match(/^([A-Za-z0-9_.:\-]+)\s*(<=|>=|<|>)\s*(-?\d+)$/);
    if (!m) die(`--where ${w}: this example supports integer bounds (rows<=10)`);
    body.push(`param({p${n}name}, $p${n})`);
    exprs.push(`$p${n} ${m[2]} {p${n}bound}`);
    params[`p${n}name`] = m[1];
    params[`p${n}bound`] = Number(m[3]);
  });
  return { check: `check if ${[...body, ...exprs].join(", ")}`, params };
}

// §18.2: each limit is one fact of this hop's block, and the block carries
// the guard `check if limits_enforced(1)`, so that a verifier which does not
// enforce limits denies instead of ignoring them. Values go in as parameters.
function limitFacts(limits, budgets) {
  const lines = [];
  const params = {};
  const given = [...limits.map((t) => [t, false]), ...budgets.map((t) => [t, true])];
  given.forEach(([text, budget], n) => {
    const m = text.trim().match(LIMIT);
    if (!m || (m[2] !== undefined) !== budget) {
      const form = budget ? "ACTION[,ACTION…] PARAM N/WINDOW" : "ACTION[,ACTION…] N/WINDOW";
      die(`${budget ? "--budget" : "--limit"} ${text}: expected ${form}`);
    }
    const window = Number(m[4]) * UNIT[m[5]];
    if (!Number.isSafeInteger(Number(m[3])) || window > 366 * 86400) {
      die(`${text}: N at most 2^53-1 here, WINDOW at most 366d`);
    }
    Object.assign(params, {
      [`l${n}actions`]: { set: m[1].split(",") },
      [`l${n}max`]: Number(m[3]),
      [`l${n}window`]: window,
    });
    if (budget) {
      params[`l${n}param`] = m[2];
      lines.push(`budget({l${n}actions}, {l${n}param}, {l${n}max}, {l${n}window});`);
    } else {
      lines.push(`limit({l${n}actions}, {l${n}max}, {l${n}window});`);
    }
  });
  if (lines.length) lines.push("check if limits_enforced(1);");
  return { lines, params };
}

const a = args(process.argv.slice(2));
const token = Biscuit.fromBase64(readFileSync(a.token, "utf8").trim(), publicKey(a.root_public_key));
const keyText = readFileSync(a.key, "utf8").trim();
if (!keyText.startsWith("ed25519-private/")) die(`${a.key}: not a Mandate private key file`);
const mine = PrivateKey.fromString(keyText);
const me = KeyPair.fromPrivateKey(mine).getPublicKey();
const chain = readChain(token);
if (me.toString() !== chain.holder.key) {
  die(`this key (${me}) does not hold the token: it was delegated to ${chain.holder.id} with key ${chain.holder.key}`);
}
if (chain.maxDepth !== null && chain.depth + 1 > chain.maxDepth) {
  die(`the root allows at most ${chain.maxDepth} delegation hops`);
}
const now = new Date(Math.floor(Date.now() / 1000) * 1000);
let expiry = new Date(now.getTime() + Number(a.ttl ?? 600) * 1000);
if (chain.expires) {
  if (chain.expires <= now) die("the token has expired");
  if (chain.expires < expiry) expiry = chain.expires;
}
if (!NAME.test(a.to)) die("--to: letters, digits and _ . : - only");
const next = publicKey(a.to_key);

const { check, params } = canonicalCheck(a.allow, a.where);
let source = "agent({agent}, {agent_key});\n";
Object.assign(params, {
  agent: a.to,
  agent_key: keyBytes(next),
  expiry: { date: expiry.toISOString().replace(/\.\d+Z$/, "Z") },
});
if (a.purpose) {
  source += "purpose({purpose});\n";
  params.purpose = a.purpose;
}
source += `${check};\n`;
const limits = limitFacts(a.limit, a.budget);
source += limits.lines.map((line) => `${line}\n`).join("");
Object.assign(params, limits.params);
const builder = new BlockBuilder();
builder.addCodeWithParameters(source, params, {});
// §10 steps 2-5: request, build, sign with this agent's own key, append.
const block = token.getThirdPartyRequest().createBlock(mine, builder);
process.stdout.write(token.appendThirdPartyBlock(me, block).toBase64() + "\n");
