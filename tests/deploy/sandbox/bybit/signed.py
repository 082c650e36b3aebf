"""Requests to the Bybit sandbox signed by hand with shared/adapters/bybit/signing.py, so each part (timestamp,
recv window, query, body, secret) can be set or tampered with on its own."""

import json
import time
from typing import Any

import httpx
from pydantic import SecretStr

from shared.adapters.bybit.signing import DEFAULT_RECV_WINDOW_MS, compute_signature, pre_sign_text, signed_headers


def now_ms() -> int:
    return int(time.time() * 1000)


def auth_headers(api_key: str, secret: str, payload: str, *, timestamp_ms: int | None = None,
                 recv_window_ms: int = DEFAULT_RECV_WINDOW_MS) -> dict[str, str]:
    timestamp = now_ms() if timestamp_ms is None else timestamp_ms
    signature = compute_signature(SecretStr(secret), pre_sign_text(timestamp, api_key, recv_window_ms, payload))
    return signed_headers(api_key, timestamp, recv_window_ms, signature)


def signed_get(sandbox: Any, note: str, path: str, query: str = "", *, secret: str | None = None,
               sent_query: str | None = None, **auth: Any) -> httpx.Response:
    """GET path?query signed as note's key; sent_query, when given, is what is sent instead (tampering)."""
    headers = auth_headers(sandbox.api_key(note), secret or sandbox.secret(note), query, **auth)
    target = sent_query if sent_query is not None else query
    return httpx.get(f"{sandbox.base_url}{path}" + (f"?{target}" if target else ""), headers=headers, timeout=5.0)


def signed_post(sandbox: Any, note: str, path: str, body: dict[str, Any], *, sent_body: str | None = None,
                **auth: Any) -> httpx.Response:
    text = json.dumps(body, separators=(",", ":"))
    headers = auth_headers(sandbox.api_key(note), sandbox.secret(note), text, **auth)
    return httpx.post(f"{sandbox.base_url}{path}", headers={**headers, "Content-Type": "application/json"},
                      content=(sent_body if sent_body is not None else text).encode(), timeout=5.0)
