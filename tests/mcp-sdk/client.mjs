// The official MCP TypeScript SDK (@modelcontextprotocol/sdk on npm) against an
// MCP endpoint: through `mandate gateway` (cli/tests/mcp_sdk.rs), or the
// reference server directly to see what it does without the gateway. Prints
// one JSON line per scenario: what the application received (results, errors
// with their HTTP status or JSON-RPC code, the message and the denial kind,
// progress events with their receive times) and the HTTP exchanges of the
// scenario ("POST tools/call 200", ...). Same scenarios as client.py.
//
// Usage: node client.mjs --url URL --token FILE [--bounded FILE] [--other FILE] [SCENARIO...]
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { discoverOAuthProtectedResourceMetadata, extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';
import { CreateMessageRequestSchema, ListRootsRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';

const SAMPLED = 'sampled by the typescript client';
const ROOT = { uri: 'file:///srv/mandate-typescript-root', name: 'typescript-root' };
const PROTOCOL = '2025-11-25';
const SCENARIO_TIMEOUT_MS = 45_000;
const SCENARIOS = [
  'initialize', 'tools_list', 'tools_list_bounded', 'allowed_call', 'denied_call', 'bounds',
  'progress', 'sampling', 'roots', 'cancel', 'delete', 'hijack', 'no_token', 'garbage_token',
  'metadata',
];

function parseArgs(argv) {
  const args = { scenarios: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (['--url', '--token', '--bounded', '--other'].includes(a)) args[a.slice(2)] = argv[++i];
    else args.scenarios.push(a);
  }
  if (!args.url) {
    console.error('usage: node client.mjs --url URL --token FILE [--bounded FILE] [--other FILE] [SCENARIO...]');
    process.exit(2);
  }
  return args;
}

const readToken = path => (path ? readFileSync(path, 'utf8').trim() : 'no-token-given');
const bearer = token => (token === null ? {} : { Authorization: `Bearer ${token}` });

/** Every HTTP exchange of a scenario, and the session ids handed out. */
class Recorder {
  constructor() {
    this.http = [];
    this.sessionId = null;
    this.t0 = performance.now();
  }
  ms() {
    return Math.round((performance.now() - this.t0) * 1000) / 1000;
  }
  fetch() {
    return async (url, init = {}) => {
      const r = await fetch(url, init);
      let rpc = '-';
      try {
        const b = JSON.parse(init.body);
        rpc = b.method ?? ('result' in b || 'error' in b ? 'response' : '?');
      } catch {}
      this.http.push(`${init.method ?? 'GET'} ${rpc} ${r.status}`);
      const sid = r.headers.get('mcp-session-id');
      if (sid) this.sessionId = sid;
      return r;
    };
  }
}

/** What the application got from a failed call or connect. */
function errorOutcome(e) {
  if (e instanceof McpError) {
    return { type: 'McpError', code: e.code, message: e.message, kind: e.data?.denial?.kind ?? null,
      reason: e.data?.reason ?? null, data: e.data ?? null };
  }
  if (e instanceof StreamableHTTPError) {
    // The SDK puts the HTTP status in .code and the response body in the
    // message; the gateway's JSON-RPC error is in that body.
    const out = { type: 'StreamableHTTPError', http_status: e.code, message: e.message };
    const at = e.message.indexOf('{');
    if (at >= 0) {
      try {
        const body = JSON.parse(e.message.slice(at));
        if (body.error) {
          Object.assign(out, { code: body.error.code, rpc_message: body.error.message,
            kind: body.error.data?.denial?.kind ?? null, reason: body.error.data?.reason ?? null, data: body.error.data ?? null });
        }
      } catch {}
    }
    return out;
  }
  return { type: e?.constructor?.name ?? typeof e, message: String(e?.message ?? e) };
}

const bodyOf = async r => {
  const text = await r.text();
  try { return JSON.parse(text); } catch { return text.slice(0, 500); }
};

class Runner {
  constructor(args) {
    this.url = new URL(args.url);
    this.token = readToken(args.token);
    this.bounded = readToken(args.bounded);
    this.other = readToken(args.other);
    this.rootsAsked = 0;
    this.onRoots = null;
    this.samplingPrompts = [];
  }

  /** An SDK client with sampling and roots (the application's callbacks). */
  async connect(token, rec, extra = {}) {
    const transport = new StreamableHTTPClientTransport(this.url, {
      requestInit: { headers: bearer(token) }, fetch: rec.fetch(), ...extra,
    });
    const client = new Client({ name: 'mandate-mcp-sdk-test', version: '0.1.0' },
      { capabilities: { sampling: {}, roots: { listChanged: true } } });
    client.setRequestHandler(CreateMessageRequestSchema, async req => {
      this.samplingPrompts.push(req.params.messages[0]?.content?.text);
      return { role: 'assistant', model: 'mandate-test-model', content: { type: 'text', text: SAMPLED } };
    });
    client.setRequestHandler(ListRootsRequestSchema, async () => {
      this.rootsAsked++;
      this.onRoots?.();
      return { roots: [ROOT] };
    });
    client.onerror = () => {};
    await client.connect(transport);
    return { client, transport };
  }

  async close({ client, transport }) {
    try { await transport.terminateSession(); } catch {}
    await client.close();
  }

  /** {text} or {error}: a tool call as the application sees it. */
  async call(client, name, args, options) {
    try {
      const r = await client.callTool({ name, arguments: args }, undefined, options);
      const text = r.content.filter(c => c.type === 'text').map(c => c.text).join('\n');
      return r.isError ? { text: `isError: ${text}` } : { text };
    } catch (e) {
      return { error: errorOutcome(e) };
    }
  }

  /** One request outside the SDK; a GET stream is closed once its status is known. */
  async raw(method, token, session, body, rec) {
    const headers = { accept: 'application/json, text/event-stream', 'mcp-protocol-version': PROTOCOL, ...bearer(token) };
    if (session) headers['mcp-session-id'] = session;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const ac = new AbortController();
    const r = await fetch(this.url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: ac.signal });
    const out = { status: r.status, www_authenticate: r.headers.get('www-authenticate') };
    if (method === 'GET' && r.status === 200) ac.abort();
    else out.body = await bodyOf(r);
    rec?.http.push(`${method} ${body?.method ?? '-'} ${r.status} (raw)`);
    return out;
  }

  async initialize(rec) {
    const c = await this.connect(this.token, rec);
    const out = { protocol_version: c.transport.protocolVersion, server_name: c.client.getServerVersion()?.name, session_id: c.transport.sessionId };
    await this.close(c);
    return out;
  }

  async toolsWith(token, rec) {
    const c = await this.connect(token, rec);
    const { tools } = await c.client.listTools();
    await this.close(c);
    return { tools: tools.map(t => ({ name: t.name, description: t.description })) };
  }
  tools_list(rec) { return this.toolsWith(this.token, rec); }
  tools_list_bounded(rec) { return this.toolsWith(this.bounded, rec); }

  async allowed_call(rec) {
    const c = await this.connect(this.token, rec);
    const out = await this.call(c.client, 'get-sum', { a: 2, b: 3 });
    await this.close(c);
    return out;
  }

  async denied_call(rec) {
    const c = await this.connect(this.token, rec);
    const out = await this.call(c.client, 'get-env', {});
    // The same call outside the SDK, for the 403's challenge.
    const call = { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'get-env', arguments: {} } };
    out.raw = await this.raw('POST', this.token, c.transport.sessionId, call, rec);
    out.after = (await this.call(c.client, 'get-sum', { a: 2, b: 3 })).text ?? null; // the session survives
    await this.close(c);
    return out;
  }

  async bounds(rec) {
    const c = await this.connect(this.bounded, rec);
    const out = {
      over: await this.call(c.client, 'get-sum', { a: 500, b: 1 }),
      // JSON.stringify(2.0) is "2": JavaScript cannot send 2.0 (client.py does).
      float: await this.call(c.client, 'get-sum', { a: 2.0, b: 3 }),
      float_sent: JSON.stringify({ a: 2.0, b: 3 }),
    };
    await this.close(c);
    return out;
  }

  /** Progress events with receive times; on the first one the client pings:
   * unbuffered, the ping's answer arrives before the operation's result. */
  async progress(rec) {
    const c = await this.connect(this.token, rec);
    const events = [], order = [];
    let ping;
    const start = rec.ms();
    const r = await c.client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 2, steps: 4 } }, undefined, {
      onprogress: p => {
        events.push({ progress: p.progress, total: p.total ?? null, t_ms: rec.ms() });
        order.push(`progress ${p.progress}`);
        if (events.length === 1) ping = c.client.ping().then(() => order.push('ping'));
      },
    });
    order.push('result');
    const resultMs = rec.ms();
    await ping;
    await this.close(c);
    return { start_ms: start, events, result_ms: resultMs, order, text: r.content[0]?.text ?? null };
  }

  async sampling(rec) {
    this.samplingPrompts = [];
    const c = await this.connect(this.token, rec);
    const out = await this.call(c.client, 'trigger-sampling-request', { prompt: 'say hi', maxTokens: 20 });
    await this.close(c);
    return { ...out, callback_prompts: this.samplingPrompts, callback_text: SAMPLED };
  }

  async roots(rec) {
    this.rootsAsked = 0;
    // The server asks for the roots on its GET stream after `initialized`;
    // wait for that (a tool asking before the stream is open is lost).
    const asked = new Promise(resolve => { this.onRoots = resolve; setTimeout(resolve, 10_000); });
    const c = await this.connect(this.token, rec);
    await asked;
    this.onRoots = null;
    const out = await this.call(c.client, 'get-roots-list', {});
    await this.close(c);
    return { ...out, roots_requests: this.rootsAsked, declared: ROOT };
  }

  async cancel(rec) {
    const c = await this.connect(this.token, rec);
    const ac = new AbortController();
    const out = {};
    const r = await this.call(c.client, 'trigger-long-running-operation', { duration: 10, steps: 10 }, {
      signal: ac.signal,
      onprogress: p => { out.progress_before_cancel ??= p.progress; ac.abort('cancelled by the application'); },
    });
    out.cancelled = r.error !== undefined;
    out.cancel_error = r.error ?? null;
    out.after = (await this.call(c.client, 'get-sum', { a: 2, b: 3 })).text ?? null;
    await this.close(c);
    return out;
  }

  async delete(rec) {
    const c = await this.connect(this.token, rec);
    await this.call(c.client, 'get-sum', { a: 2, b: 3 });
    const sid = c.transport.sessionId;
    let deleteError = null;
    try { await c.transport.terminateSession(); } catch (e) { deleteError = errorOutcome(e); }
    const deletes = rec.http.filter(h => h.startsWith('DELETE '));
    await c.client.close();
    const after = await this.raw('POST', this.token, sid, { jsonrpc: '2.0', id: 7, method: 'tools/list' }, rec);
    return { session_id: sid, delete_status: deletes.length ? Number(deletes.at(-1).split(' ').at(-1)) : null,
      delete_error: deleteError, after };
  }

  async hijack(rec) {
    const c = await this.connect(this.token, rec);
    const sid = c.transport.sessionId;
    const out = { session_id: sid };
    // The SDK can resume a session by id: another principal's client does so
    // (connect() skips initialize when the transport has a session id).
    const other = new Client({ name: 'other-principal', version: '0.1.0' });
    other.onerror = () => {};
    const otherTransport = new StreamableHTTPClientTransport(this.url, {
      requestInit: { headers: bearer(this.other) }, fetch: rec.fetch(), sessionId: sid,
    });
    await other.connect(otherTransport);
    out.other_sdk_call = await this.call(other, 'get-sum', { a: 1, b: 1 });
    await other.close();
    const call = { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'get-sum', arguments: { a: 1, b: 1 } } };
    out.other_post = await this.raw('POST', this.other, sid, call, rec);
    out.other_get = await this.raw('GET', this.other, sid, undefined, rec);
    out.other_delete = await this.raw('DELETE', this.other, sid, undefined, rec);
    out.no_token_post = await this.raw('POST', null, sid, call, rec);
    out.owner_after = (await this.call(c.client, 'get-sum', { a: 2, b: 3 })).text ?? null; // untouched
    await this.close(c);
    return out;
  }

  async unauthenticated(token, rec) {
    const init = { jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'raw', version: '0' } } };
    const r = await fetch(this.url, { method: 'POST', body: JSON.stringify(init),
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...bearer(token) } });
    const params = extractWWWAuthenticateParams(r); // the SDK's own challenge parsing
    const out = { status: r.status, www_authenticate: r.headers.get('www-authenticate'), body: await bodyOf(r),
      sdk_challenge: { error: params.error ?? null, resource_metadata: params.resourceMetadataUrl?.href ?? null } };
    const sid = r.headers.get('mcp-session-id');
    if (r.ok && sid) await fetch(this.url, { method: 'DELETE', headers: { 'mcp-session-id': sid, ...bearer(token) } });
    try {
      const c = await this.connect(token, rec);
      out.sdk = { connected: true, protocol_version: c.transport.protocolVersion };
      await this.close(c);
    } catch (e) {
      out.sdk = { error: errorOutcome(e) };
    }
    return out;
  }
  no_token(rec) { return this.unauthenticated(null, rec); }
  garbage_token(rec) { return this.unauthenticated('not-a-mandate-token', rec); }

  /** RFC 9728 discovery with the SDK's own function, from the 401 challenge. */
  async metadata(rec) {
    const challenge = await fetch(this.url, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }) });
    await challenge.body?.cancel();
    const { resourceMetadataUrl } = extractWWWAuthenticateParams(challenge);
    const out = { challenge_resource_metadata: resourceMetadataUrl?.href ?? null };
    try {
      out.sdk_metadata = await discoverOAuthProtectedResourceMetadata(this.url, { resourceMetadataUrl }, rec.fetch());
      out.sdk_valid = true;
    } catch (e) {
      out.sdk_valid = false;
      out.sdk_error = String(e.message ?? e).slice(0, 300);
    }
    const wellKnown = new URL('/.well-known/oauth-protected-resource' + this.url.pathname, this.url);
    const r = await fetch(wellKnown);
    Object.assign(out, { url: wellKnown.href, status: r.status, content_type: r.headers.get('content-type'), body: await bodyOf(r) });
    return out;
  }

  async run(name) {
    const rec = new Recorder();
    const out = { lang: 'typescript', scenario: name };
    let timer;
    try {
      const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('scenario timeout')), SCENARIO_TIMEOUT_MS); });
      Object.assign(out, await Promise.race([this[name](rec), timeout]));
    } catch (e) {
      if (e?.message === 'scenario timeout') out.timeout = true;
      else { out.exception = errorOutcome(e); out.stack = String(e?.stack ?? '').split('\n').slice(0, 4); }
    } finally {
      clearTimeout(timer);
    }
    out.http = rec.http;
    return out;
  }
}

const args = parseArgs(process.argv.slice(2));
const runner = new Runner(args);
for (const name of args.scenarios.length ? args.scenarios : SCENARIOS) {
  if (!SCENARIOS.includes(name)) {
    console.error(`unknown scenario ${name}; one of ${SCENARIOS.join(', ')}`);
    process.exit(2);
  }
  console.log(JSON.stringify(await runner.run(name)));
}
// Streams a timed-out scenario left open must not keep the process alive.
process.exit(0);
