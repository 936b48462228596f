"""The real aiohttp transport against local servers: it never follows a redirect."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from providers.transport import AiohttpTransport, HttpResponse
from tests.providers.fakes import TIMEOUTS

SECRET_HEADERS = {"x-api-key": "transport-test-SECRET", "content-type": "application/json"}
PROMPT = b'{"prompt": "internal notes"}'


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _post_to_redirecting_server(status: int) -> tuple[HttpResponse, list[web.Request]]:
    reached: list[web.Request] = []

    async def trap(request: web.Request) -> web.Response:
        reached.append(request)
        return web.json_response({"choices": []})

    trap_app = web.Application()
    trap_app.router.add_route("*", "/{tail:.*}", trap)
    trap_runner, trap_url = await _serve(trap_app)

    async def redirect(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, headers={"Location": f"{trap_url}/v1/messages"})

    provider_app = web.Application()
    provider_app.router.add_post("/v1/messages", redirect)
    provider_runner, provider_url = await _serve(provider_app)
    transport = AiohttpTransport()
    try:
        response = await transport.post(
            f"{provider_url}/v1/messages", headers=SECRET_HEADERS, body=PROMPT, timeouts=TIMEOUTS
        )
        # A followed redirect would already have been answered; give a stray one time to land.
        await asyncio.sleep(0.05)
    finally:
        await transport.close()
        await provider_runner.cleanup()
        await trap_runner.cleanup()
    return response, reached


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_from_provider_is_returned_not_followed(status: int) -> None:
    response, reached = asyncio.run(_post_to_redirecting_server(status))

    assert response.status == status
    assert response.headers["location"].endswith("/v1/messages")
    assert reached == []
