"""A client of every sandbox's admin API (`/_sandbox/...`, see deploy/sandbox/common/admin.py), for tests and the
benchmark."""

from typing import Any

import httpx


class SandboxAdmin:
    """The sandbox's admin API; every call raises on a non-2xx answer."""

    def __init__(self, base_url: str) -> None:
        # No connection kept between calls: the server closes an idle one after a few seconds, and a call that
        # reuses it just then is reset (seen under load in CI). Admin calls are few; a fresh connection is cheap.
        self._http = httpx.Client(base_url=f"{base_url}/_sandbox", timeout=5.0,
                                  limits=httpx.Limits(max_keepalive_connections=0))

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._http.request(method, path, json=payload)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def health(self) -> dict[str, Any]:
        return self._send("GET", "/health")

    def reset(self, seed: int | None = None) -> None:
        self._send("POST", "/reset", {"seed": seed})

    def put_user(self, user: dict[str, Any]) -> None:
        self._send("PUT", f"/users/{user['uid']}", user)

    def put_key(self, uid: int, key: dict[str, Any]) -> None:
        self._send("PUT", f"/users/{uid}/keys", key)

    def update_key(self, access_key: str, **changes: Any) -> dict[str, Any]:
        key: dict[str, Any] = self._send("PATCH", f"/keys/{access_key}", changes)["key"]
        return key

    def delete_key(self, access_key: str) -> None:
        self._send("DELETE", f"/keys/{access_key}")

    def put_account(self, uid: int, account: dict[str, Any]) -> None:
        self._send("PUT", f"/users/{uid}/accounts", account)

    def set_account_state(self, account_id: int, state: str) -> None:
        self._send("PATCH", f"/accounts/{account_id}", {"state": state})

    def put_symbol(self, symbol: dict[str, Any]) -> None:
        self._send("PUT", f"/symbols/{symbol['symbol']}", symbol)

    def set_market_status(self, **status: Any) -> None:
        self._send("PUT", "/market-status", status)

    def set_fault(self, endpoint: str, **fault: Any) -> None:
        self._send("PUT", "/faults", {"endpoint": endpoint, **fault})

    def clear_faults(self) -> None:
        self._send("DELETE", "/faults")

    def set_rate_limit(self, endpoint: str, requests: int, window_ms: int) -> None:
        self._send("PUT", "/rate-limits", {"endpoint": endpoint, "requests": requests, "window_ms": window_ms})

    def orders(self) -> list[dict[str, Any]]:
        orders: list[dict[str, Any]] = self._send("GET", "/orders")["orders"]
        return orders

    def request_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = self._send("GET", "/requests")["requests"]
        return counts
