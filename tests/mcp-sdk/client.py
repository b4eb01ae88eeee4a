"""The official MCP Python SDK (`mcp` on PyPI) against an MCP endpoint: through
`mandate gateway` (cli/tests/mcp_sdk.rs), or the reference server directly to
see what it does without the gateway. Prints one JSON line per scenario: what
the application received (results, errors with their JSON-RPC code, message
and denial kind, progress events with their receive times) and the HTTP
exchanges of the scenario ("POST tools/call 200", ...).

Usage: client.py --url URL --token FILE [--bounded FILE] [--other FILE] [SCENARIO...]
  --token    the agent's token: the tools of the everything server it calls
  --bounded  the same principal, get-sum only where a<=100
  --other    another principal's token (the session hijack)
Without a SCENARIO, runs them all (see SCENARIOS).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
import warnings
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import mcp.types as types
from mcp import Client
from mcp.client.auth.utils import (
    build_protected_resource_metadata_discovery_urls,
    extract_field_from_www_auth,
    extract_resource_metadata_from_www_auth,
)
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import ProtectedResourceMetadata
from mcp.shared.exceptions import MCPError

SAMPLED = "sampled by the python client"
ROOT = {"uri": "file:///srv/mandate-python-root", "name": "python-root"}
PROTOCOL = "2025-11-25"
SCENARIO_TIMEOUT = 45

SCENARIOS = [
    "initialize",
    "tools_list",
    "tools_list_bounded",
    "allowed_call",
    "denied_call",
    "bounds",
    "progress",
    "sampling",
    "roots",
    "cancel",
    "delete",
    "hijack",
    "no_token",
    "garbage_token",
    "metadata",
]


class Recorder:
    """Every HTTP exchange of a scenario, and the session ids handed out."""

    def __init__(self) -> None:
        self.http: list[str] = []
        self.session_id: str | None = None
        self.t0 = time.monotonic()

    def ms(self) -> float:
        return round((time.monotonic() - self.t0) * 1000, 3)

    async def on_response(self, r: httpx2.Response) -> None:
        rpc = "-"
        try:
            body = json.loads(r.request.content or b"null")
            if isinstance(body, dict):
                rpc = body.get("method") or ("response" if "result" in body or "error" in body else "?")
        except (ValueError, httpx2.RequestNotRead):
            pass
        self.http.append(f"{r.request.method} {rpc} {r.status_code}")
        sid = r.headers.get("mcp-session-id")
        if sid:
            self.session_id = sid


def leaf(e: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


def error_outcome(e: BaseException) -> dict[str, Any]:
    e = leaf(e)
    if isinstance(e, MCPError):
        data = e.data if isinstance(e.data, dict) else None
        denial = (data or {}).get("denial") or {}
        return {
            "type": "MCPError",
            "code": e.code,
            "message": e.message,
            "kind": denial.get("kind"),
            "reason": (data or {}).get("reason"),
            "data": e.data,
        }
    return {"type": type(e).__name__, "message": str(e)}


def body_of(r: httpx2.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text[:500]


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url: str = args.url
        self.token = read_token(args.token)
        self.bounded = read_token(args.bounded)
        self.other = read_token(args.other)
        parts = urlsplit(self.url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.roots_asked = 0
        self.roots_event: anyio.Event | None = None
        self.sampling_prompts: list[str] = []

    # The client application's callbacks (server -> client requests).
    async def sampling(self, ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        content = params.messages[0].content
        self.sampling_prompts.append(getattr(content, "text", str(content)))
        return types.CreateMessageResult(
            role="assistant", model="mandate-test-model", content=types.TextContent(type="text", text=SAMPLED)
        )

    async def list_roots(self, ctx: Any) -> types.ListRootsResult:
        self.roots_asked += 1
        if self.roots_event is not None:
            self.roots_event.set()
        return types.ListRootsResult(roots=[types.Root(uri=ROOT["uri"], name=ROOT["name"])])

    def headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token is not None else {}

    @asynccontextmanager
    async def connect(self, token: str | None, rec: Recorder):
        http = httpx2.AsyncClient(
            headers=self.headers(token),
            timeout=httpx2.Timeout(30, read=60),
            event_hooks={"response": [rec.on_response]},
        )
        async with http:
            transport = streamable_http_client(self.url, http_client=http)
            async with Client(
                transport,
                mode="auto",
                read_timeout_seconds=30,
                sampling_callback=self.sampling,
                list_roots_callback=self.list_roots,
            ) as client:
                yield client

    async def raw(
        self, method: str, token: str | None, session: str | None = None, body: Any = None, rec: Recorder | None = None
    ) -> dict[str, Any]:
        """One request outside the SDK (what it cannot send: a foreign session
        id, no token); the GET stream is closed once its status is known."""
        headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": PROTOCOL}
        headers.update(self.headers(token))
        if session is not None:
            headers["mcp-session-id"] = session
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(30)) as http:
            async with http.stream(method, self.url, headers=headers, json=body) as r:
                out: dict[str, Any] = {"status": r.status_code, "www_authenticate": r.headers.get("www-authenticate")}
                if method != "GET" or r.status_code != 200:
                    await r.aread()
                    out["body"] = body_of(r)
                if rec is not None:
                    rpc = body.get("method") if isinstance(body, dict) else "-"
                    rec.http.append(f"{method} {rpc} {r.status_code} (raw)")
                return out

    async def call(self, client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """{text} or {error}: a tool call as the application sees it."""
        try:
            result = await client.call_tool(name, arguments)
        except MCPError as e:
            return {"error": error_outcome(e)}
        text = "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))
        return {"text": f"isError: {text}" if result.is_error else text}

    async def call_text(self, client: Client, name: str, arguments: dict[str, Any]) -> str | None:
        return (await self.call(client, name, arguments)).get("text")

    # Scenarios: each returns what the application saw.
    async def initialize(self, rec: Recorder) -> dict[str, Any]:
        async with self.connect(self.token, rec) as c:
            info = c.server_info
            return {
                "protocol_version": c.protocol_version,
                "server_name": info.name if info else None,
                "session_id": rec.session_id,
            }

    async def _tools(self, token: str, rec: Recorder) -> dict[str, Any]:
        async with self.connect(token, rec) as c:
            tools = await c.list_tools()
            return {"tools": [{"name": t.name, "description": t.description} for t in tools.tools]}

    async def tools_list(self, rec: Recorder) -> dict[str, Any]:
        return await self._tools(self.token, rec)

    async def tools_list_bounded(self, rec: Recorder) -> dict[str, Any]:
        return await self._tools(self.bounded, rec)

    async def allowed_call(self, rec: Recorder) -> dict[str, Any]:
        async with self.connect(self.token, rec) as c:
            return await self.call(c, "get-sum", {"a": 2, "b": 3})

    async def denied_call(self, rec: Recorder) -> dict[str, Any]:
        async with self.connect(self.token, rec) as c:
            out = await self.call(c, "get-env", {})
            # The same call outside the SDK, for the 403's challenge.
            call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "get-env", "arguments": {}}}
            out["raw"] = await self.raw("POST", self.token, rec.session_id, call, rec)
            # The session survives a denial.
            out["after"] = await self.call_text(c, "get-sum", {"a": 2, "b": 3})
            return out

    async def bounds(self, rec: Recorder) -> dict[str, Any]:
        async with self.connect(self.bounded, rec) as c:
            return {
                "over": await self.call(c, "get-sum", {"a": 500, "b": 1}),
                # 2.0 goes on the wire as `2.0` (a JSON float), not `2`.
                "float": await self.call(c, "get-sum", {"a": 2.0, "b": 3}),
                "float_sent": json.dumps({"a": 2.0, "b": 3}),
            }

    async def progress(self, rec: Recorder) -> dict[str, Any]:
        """Progress events with their receive times; on the first one the
        client pings the server: under unbuffered streaming the ping's answer
        arrives before the operation's result (the order proves the events
        were not held back until the end)."""
        async with self.connect(self.token, rec) as c:
            events: list[dict[str, Any]] = []
            order: list[str] = []
            # Listed first: the SDK validates a result against the tool's
            # output schema and lists the tools when it has not, which would
            # delay the result behind a round trip of its own.
            await c.list_tools()
            start = rec.ms()

            async def ping() -> None:
                await c.send_ping()
                order.append("ping")

            async with anyio.create_task_group() as tg:

                async def on_progress(p: float, total: float | None, message: str | None) -> None:
                    events.append({"progress": p, "total": total, "t_ms": rec.ms()})
                    order.append(f"progress {p:g}")
                    if len(events) == 1:
                        tg.start_soon(ping)

                text = await c.call_tool(
                    "trigger-long-running-operation", {"duration": 2, "steps": 4}, progress_callback=on_progress
                )
                order.append("result")
                result_ms = rec.ms()
            return {
                "start_ms": start,
                "events": events,
                "result_ms": result_ms,
                "order": order,
                "text": text.content[0].text if text.content else None,
            }

    async def sampling_scenario(self, rec: Recorder) -> dict[str, Any]:
        self.sampling_prompts = []
        async with self.connect(self.token, rec) as c:
            out = await self.call(c, "trigger-sampling-request", {"prompt": "say hi", "maxTokens": 20})
            return {**out, "callback_prompts": self.sampling_prompts, "callback_text": SAMPLED}

    async def roots(self, rec: Recorder) -> dict[str, Any]:
        self.roots_asked = 0
        self.roots_event = anyio.Event()
        async with self.connect(self.token, rec) as c:
            # The server asks for the roots on its GET stream after
            # `initialized`; wait for that (the tool would otherwise ask while
            # the stream is not open yet, and the request would be lost).
            with anyio.move_on_after(10):
                await self.roots_event.wait()
            out = await self.call(c, "get-roots-list", {})
            return {**out, "roots_requests": self.roots_asked, "declared": ROOT}

    async def cancel(self, rec: Recorder) -> dict[str, Any]:
        async with self.connect(self.token, rec) as c:
            out: dict[str, Any] = {}
            with anyio.CancelScope() as scope:

                async def on_progress(p: float, total: float | None, message: str | None) -> None:
                    out.setdefault("progress_before_cancel", p)
                    scope.cancel()

                await c.call_tool(
                    "trigger-long-running-operation", {"duration": 10, "steps": 10}, progress_callback=on_progress
                )
            out["cancelled"] = scope.cancelled_caught
            out["after"] = await self.call_text(c, "get-sum", {"a": 2, "b": 3})
            return out

    async def delete(self, rec: Recorder) -> dict[str, Any]:
        async with self.connect(self.token, rec) as c:
            await self.call_text(c, "get-sum", {"a": 2, "b": 3})
            sid = rec.session_id
        # Leaving the client sent DELETE; the old session id is gone.
        deletes = [h for h in rec.http if h.startswith("DELETE ")]
        after = await self.raw("POST", self.token, sid, {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}, rec)
        return {
            "session_id": sid,
            "delete_status": int(deletes[-1].split()[-1]) if deletes else None,
            "after": after,
        }

    async def hijack(self, rec: Recorder) -> dict[str, Any]:
        async with self.connect(self.token, rec) as c:
            sid = rec.session_id
            call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "get-sum", "arguments": {"a": 1, "b": 1}}}
            out: dict[str, Any] = {"session_id": sid}
            out["other_post"] = await self.raw("POST", self.other, sid, call, rec)
            out["other_get"] = await self.raw("GET", self.other, sid, None, rec)
            out["other_delete"] = await self.raw("DELETE", self.other, sid, None, rec)
            out["no_token_post"] = await self.raw("POST", None, sid, call, rec)
            # The owner's session is untouched.
            out["owner_after"] = await self.call_text(c, "get-sum", {"a": 2, "b": 3})
            return out

    async def _unauthenticated(self, token: str | None, rec: Recorder) -> dict[str, Any]:
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
        }
        headers = {"accept": "application/json, text/event-stream", **self.headers(token)}
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(30)) as http:
            r = await http.post(self.url, json=init, headers=headers)
            out: dict[str, Any] = {
                "status": r.status_code,
                "www_authenticate": r.headers.get("www-authenticate"),
                "body": body_of(r),
                # What the SDK's own challenge parsing reads from it.
                "sdk_challenge": {
                    "error": extract_field_from_www_auth(r, "error"),
                    "resource_metadata": extract_resource_metadata_from_www_auth(r),
                },
            }
            if 200 <= r.status_code < 300 and r.headers.get("mcp-session-id"):
                await http.delete(self.url, headers={**headers, "mcp-session-id": r.headers["mcp-session-id"]})
        try:
            async with self.connect(token, rec) as c:
                out["sdk"] = {"connected": True, "protocol_version": c.protocol_version}
        except Exception as e:  # what the application gets when connecting
            out["sdk"] = {"error": error_outcome(e)}
        return out

    async def no_token(self, rec: Recorder) -> dict[str, Any]:
        return await self._unauthenticated(None, rec)

    async def garbage_token(self, rec: Recorder) -> dict[str, Any]:
        return await self._unauthenticated("not-a-mandate-token", rec)

    async def metadata(self, rec: Recorder) -> dict[str, Any]:
        """RFC 9728 discovery the way the SDK's OAuth client does it: the
        challenge's resource_metadata first, then the well-known URIs."""
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(30)) as http:
            challenge = await http.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            urls = build_protected_resource_metadata_discovery_urls(
                extract_resource_metadata_from_www_auth(challenge), self.url
            )
            out: dict[str, Any] = {"discovery_urls": urls}
            for url in urls:
                r = await http.get(url)
                rec.http.append(f"GET {url} {r.status_code}")
                if r.status_code != 200:
                    continue
                out.update(url=url, status=r.status_code, content_type=r.headers.get("content-type"), body=body_of(r))
                try:
                    ProtectedResourceMetadata.model_validate_json(r.content)
                    out["sdk_valid"] = True
                except Exception as e:  # the SDK's model refuses it
                    out["sdk_valid"] = False
                    out["sdk_error"] = str(e).splitlines()[:3]
                break
            return out

    async def run(self, name: str) -> dict[str, Any]:
        rec = Recorder()
        fn = self.sampling_scenario if name == "sampling" else getattr(self, name)
        out: dict[str, Any] = {"lang": "python", "scenario": name}
        try:
            with anyio.fail_after(SCENARIO_TIMEOUT):
                out.update(await fn(rec))
        except TimeoutError:
            out["timeout"] = True
        except Exception as e:  # reported, and the next scenario runs
            out["exception"] = error_outcome(e)
            out["traceback"] = traceback.format_exception(leaf(e))[-3:]
        out["http"] = rec.http
        return out


def read_token(path: str | None) -> str:
    if path is None:
        return "no-token-given"
    with open(path) as f:
        return f.read().strip()


async def main() -> None:
    # The SDK's own warnings (ping deprecated at 2026-07-28, a refused DELETE)
    # are not outcomes; stdout carries only the JSON lines.
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token")
    p.add_argument("--bounded")
    p.add_argument("--other")
    p.add_argument("scenarios", nargs="*")
    args = p.parse_args()
    runner = Runner(args)
    for name in args.scenarios or SCENARIOS:
        if name not in SCENARIOS:
            sys.exit(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")
        print(json.dumps(await runner.run(name)), flush=True)


if __name__ == "__main__":
    anyio.run(main)
