"""The control plane over HTTP (aiohttp): MAKE endpoints, status, federation and epoch ticks.

    POST /v1/make/hello    ClientHello  -> ServerHello        (JSON, docs/make.md)
    POST /v1/make/finish   ClientFinish -> Release | refusal
    POST /v1/make/abort    {session, code, reason}: the client found the handshake wrong (audited)
    GET  /v1/status        domain, bundle measurement, epoch, simulated or not (no secrets)

Limits on every request: a body of at most MAX_BODY bytes read within
READ_TIMEOUT seconds; handshakes expire after broker.HANDSHAKE_TTL. Every
refusal, including an oversized or unreadable request, is in the audit log.
Authentication comes from MAKE itself, not from the transport.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from sealnet.runtime.controlplane.broker import Broker, Refused
from sealnet.runtime.controlplane.federation import Federation

MAX_BODY = 64 * 1024
READ_TIMEOUT = 10.0


async def read_limited(stream: Any, limit: int) -> bytes:
    """The whole body (a read returns whatever has arrived, so read to the end), refusing more than `limit`."""
    chunks, total = [], 0
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise Refused("oversize", f"body exceeds {limit} bytes", 413)
        chunks.append(chunk)


async def _body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Refused("oversize", f"request body of {request.content_length} bytes exceeds {MAX_BODY}", 413)
    try:
        raw = await asyncio.wait_for(read_limited(request.content, MAX_BODY), READ_TIMEOUT)
    except asyncio.TimeoutError:
        raise Refused("timeout", f"request body not received within {READ_TIMEOUT:.1f} s", 408) from None
    except (ConnectionError, aiohttp.ClientPayloadError) as exc:
        raise Refused("malformed", f"request body cut short ({exc.__class__.__name__})", 400) from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused("malformed", f"request body is not JSON ({str(exc)[:80]})", 400) from None


def _peer(request: web.Request) -> str:
    return str(request.remote or "?")


def build_app(broker: Broker) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)

    async def make_step(request: web.Request, step: str) -> web.Response:
        try:
            try:
                msg = await _body(request)
            except Refused as exc:
                await broker.record_refusal(exc, role="?", domain="?", peer=_peer(request), stage=step)
                raise
            step_of = {"hello": broker.hello, "finish": broker.finish, "abort": broker.abort}
            reply = await step_of[step](msg, _peer(request))
            return web.json_response(reply)
        except Refused as exc:
            return web.json_response(exc.to_json(), status=exc.status)

    async def hello(request: web.Request) -> web.Response:
        return await make_step(request, "hello")

    async def finish(request: web.Request) -> web.Response:
        return await make_step(request, "finish")

    async def abort(request: web.Request) -> web.Response:
        return await make_step(request, "abort")

    async def status(request: web.Request) -> web.Response:
        c = broker.config
        return web.json_response({"domain": c.domain, "bundle_measurement": c.bundle_measurement,
                                  "epoch": broker.current_epoch(), "period": c.period,
                                  "simulated": c.verifier.allows_simulation})

    app.router.add_post("/v1/make/hello", hello)
    app.router.add_post("/v1/make/finish", finish)
    app.router.add_post("/v1/make/abort", abort)
    app.router.add_get("/v1/status", status)
    return app


@dataclass
class Running:
    runner: web.AppRunner
    port: int
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.runner.cleanup()


async def start(broker: Broker, host: str, port: int, federation: Federation | None = None) -> Running:
    """Serve on host:port (port 0: any free port); epochs ticked and federation synced in the background."""
    broker.ensure_epochs()
    runner = web.AppRunner(build_app(broker), access_log=None, keepalive_timeout=15)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    running = Running(runner, bound)
    running.tasks.append(asyncio.create_task(_tick(broker, federation)))
    return running


async def _tick(broker: Broker, federation: Federation | None) -> None:
    """Draw kept secrets ahead of time and fetch the keepers' ones: next is ready a period before use."""
    interval = max(0.2, min(30.0, broker.config.period / 4))
    while True:
        broker.ensure_epochs()
        if federation is not None:
            await federation.sync()
        await asyncio.sleep(interval)
