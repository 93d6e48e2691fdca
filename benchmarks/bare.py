"""The ceiling of the stack: a bare aiohttp endpoint doing the minimum of a webhook.

``POST /hooks/twilio/voice`` reads the body, parses the form exactly as the real
handler does (``parse_qsl`` of the UTF-8 body) and answers a constant TwiML
document. Same Python, aiohttp, uvloop and server settings as ``regulator serve``
(no access log), so ``full / bare`` throughput is the cost of everything the
service adds: signature check, decision, logging, metrics and the call record.

    python -m benchmarks.bare --port 8181
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from urllib.parse import parse_qsl

from aiohttp import web

_TWIML = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response>'
    b'<Say language="fr-FR">Vous \xc3\xaates en relation avec la maison m\xc3\xa9dicale.</Say>'
    b'<Dial timeout="30"><Number>+33466000015</Number></Dial></Response>'
)


async def voice(request: web.Request) -> web.Response:
    body = await request.read()
    form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    if not form.get("CallSid"):
        return web.Response(status=400, text="CallSid manquant")
    return web.Response(body=_TWIML, content_type="application/xml")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/hooks/twilio/voice", voice)
    app.router.add_get("/healthz", healthz)
    return app


async def _serve(host: str, port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8181)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(_serve(args.host, args.port))
    else:
        uvloop.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
