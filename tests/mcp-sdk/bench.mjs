// Latency of one MCP tools/call (get-sum) with the official TypeScript SDK,
// against the reference server directly and through `mandate gateway`, in
// the same process: one session each, a warm-up, then the calls interleaved
// in blocks so both see the same machine. Run by scripts/bench-mcp.sh.
//
// Usage: node bench.mjs --direct URL --gateway URL --token FILE [--calls N] [--warmup N]
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const calls = Number(args.calls ?? 2000);
const warmup = Number(args.warmup ?? 200);
const block = 100;

async function connect(url, token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const client = new Client({ name: 'mandate-bench', version: '0.1.0' });
  await client.connect(transport);
  return { client, transport };
}

async function timed(client, n, into) {
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await client.callTool({ name: 'get-sum', arguments: { a: i, b: 1 } });
    const ms = performance.now() - t;
    if (r.isError || r.content[0]?.text !== `The sum of ${i} and 1 is ${i + 1}.`) {
      throw new Error(`unexpected answer: ${JSON.stringify(r)}`);
    }
    into?.push(ms);
  }
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const token = readFileSync(args.token, 'utf8').trim();
const targets = [
  { name: 'direct', ...(await connect(args.direct)), samples: [] },
  { name: 'gateway', ...(await connect(args.gateway, token)), samples: [] },
];
for (const t of targets) await timed(t.client, warmup);
for (let done = 0; done < calls; done += block) {
  for (const t of targets) await timed(t.client, Math.min(block, calls - done), t.samples);
}
const rows = targets.map(t => {
  const s = [...t.samples].sort((a, b) => a - b);
  return { name: t.name, n: s.length, p50: pct(s, 50), p99: pct(s, 99), mean: s.reduce((a, b) => a + b, 0) / s.length };
});
const f = x => x.toFixed(3).padStart(8);
console.log(`MCP tools/call get-sum, TypeScript SDK 1.32.2, one session each, ${calls} calls after ${warmup} warm-up`);
console.log('target       calls   p50 ms   p99 ms  mean ms');
for (const r of rows) console.log(`${r.name.padEnd(10)} ${String(r.n).padStart(7)} ${f(r.p50)} ${f(r.p99)} ${f(r.mean)}`);
console.log(`added      ${''.padStart(7)} ${f(rows[1].p50 - rows[0].p50)} ${f(rows[1].p99 - rows[0].p99)} ${f(rows[1].mean - rows[0].mean)}`);
for (const t of targets) {
  try { await t.transport.terminateSession(); } catch {}
  await t.client.close();
}
process.exit(0);
