"""A scripted HTX (an httpx transport answering from a list) and a fake clock, for tests of the client and
the inspection without a server."""

import asyncio
import random

import httpx

from shared.adapters.htx.client import HtxClient

BASE_URL = "http://127.0.0.1:8930"
START = 1_700_000_000.0


class FakeTime:
    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedHtx:
    """Answers requests in turn from answers (the last one repeats); an exception answer is raised."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sent_at: list[float] = []
        self.time: FakeTime | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.time is not None:
            self.sent_at.append(self.time.now)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok(data=63628520, headers=None) -> httpx.Response:
    return httpx.Response(200, json={"code": 200, "data": data}, headers=headers)


def v1_error(code: str, message: str, headers=None) -> httpx.Response:
    return httpx.Response(200, json={"status": "error", "err-code": code, "err-msg": message, "data": None},
                          headers=headers)


GATEWAY_ERROR = v1_error("gateway-internal-error", "Failed to load data. Try again later.")
BAD_GATEWAY = httpx.Response(502, text="<html>502 Bad Gateway</html>")


class StreamingTransport(httpx.AsyncBaseTransport):
    """httpx.MockTransport, except that each answer is a fresh, unread stream: MockTransport reads the answer
    before the client sees it, and the client reads answers raw, as they stream."""

    def __init__(self, htx: ScriptedHtx, answer_after_s: float = 0.0) -> None:
        self._htx = htx
        self._answer_after_s = answer_after_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        await asyncio.sleep(self._answer_after_s)
        answer = self._htx(request)
        return httpx.Response(answer.status_code, headers=answer.headers, stream=httpx.ByteStream(answer.content))


def client_for(htx: ScriptedHtx, time: FakeTime, **options) -> HtxClient:
    htx.time = time
    options = {"retry_budget_s": 2.0, "backoff_base_s": 0.1, "backoff_cap_s": 1.0, "rng": random.Random(7)} | options
    return HtxClient(BASE_URL, transport=StreamingTransport(htx), clock=time.clock, sleep=time.sleep, **options)
