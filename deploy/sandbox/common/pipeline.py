"""What every sandbox's request pipeline does the same way: count each answer by its outcome, and live through an
injected fault (latency, held requests, forced errors) before the exchange's own checks."""

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from deploy.sandbox.common.envelopes import Refusal
from deploy.sandbox.common.state import Fault, SandboxBooks

log = structlog.get_logger()

# An exchange's answer to one request: (JSON body, headers), or a Refusal raised.
Answer = Callable[[Request, bytes], Awaitable[tuple[dict[str, Any], dict[str, str]]]]


def counted(answer: Answer) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint that serves answer and counts what it said under "METHOD /path"."""

    async def serve(request: Request) -> Response:
        books: SandboxBooks = request.app.state.sandbox
        endpoint_name = f"{request.method} {request.url.path}"
        body = await request.body()
        try:
            payload, headers = await answer(request, body)
            response: Response = JSONResponse(payload, headers=headers)
            outcome = "ok"
        except Refusal as refusal:
            response, outcome = refusal.response(), refusal.outcome
            log.info("sandbox.refused", endpoint=endpoint_name, outcome=outcome)
        books.count(endpoint_name, outcome)
        return response

    return serve


async def endure(fault: Fault, rng: random.Random, *, maintenance: Callable[[], Refusal],
                 timeout: Callable[[], Refusal], error: Callable[[], Refusal]) -> None:
    """Live through an injected fault, raising the exchange's refusals: maintenance at once; else the fault's latency,
    then a held request (timeout, after timeout_hold_ms) or a forced error (the next fail_next requests, then
    error_rate of them; error reads the fault's error_kind); else the request goes on."""
    if fault.maintenance:
        raise maintenance()
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)
    if fault.timeout_rate and rng.random() < fault.timeout_rate:
        await asyncio.sleep(fault.timeout_hold_ms / 1000)
        raise timeout()
    if fault.fail_next:
        fault.fail_next -= 1
        raise error()
    if fault.error_rate and rng.random() < fault.error_rate:
        raise error()
