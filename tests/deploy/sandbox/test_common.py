"""The admin API and pipeline that deploy/sandbox/common/ gives every sandbox, proved on the three real servers
(each started by tests/fixtures/sandbox.py's one helper): the same admin paths and answers, and each exchange's own
words for an injected fault, counted like any answer."""

from typing import Any

import httpx
import pytest

# name → (clean fixture, a public GET path and its query, the HTTP status and (field, code) of its maintenance answer).
EXCHANGES: dict[str, tuple[str, str, dict[str, str], int, tuple[str, str] | None]] = {
    # deploy/sandbox/htx/envelopes.py maintenance(): HTX's envelope at HTTP 200.
    "htx": ("clean_htx_sandbox", "/v1/common/timestamp", {}, 200, ("err-code", "system-maintenance")),
    # deploy/sandbox/bybit/scenario.py BybitFault: an HTTP 503 page, no envelope.
    "bybit": ("clean_bybit_sandbox", "/v5/market/instruments-info", {"category": "spot"}, 503, None),
    # deploy/sandbox/okx/okx_api.py _suffer: 50001 at HTTP 503.
    "okx": ("clean_okx_sandbox", "/api/v5/public/instruments", {"instType": "SPOT"}, 503, ("code", "50001")),
}


@pytest.fixture(params=list(EXCHANGES))
def exchange(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, request.getfixturevalue(EXCHANGES[request.param][0])


def test_every_sandbox_serves_the_generic_admin_paths(exchange):
    _, sandbox = exchange
    assert sandbox.admin.health() == {"status": "ok"}
    with httpx.Client(base_url=f"{sandbox.base_url}/_sandbox") as admin:
        assert admin.put("/rate-limits", json={"endpoint": "*", "requests": 1, "window_ms": 1000}).status_code == 422
        assert admin.put("/faults", json={"endpoint": "*", "no-such-field": 1}).status_code == 422
        assert admin.patch("/keys/no-such-key", json={}).status_code == 404
    assert sandbox.admin.orders() == []


def test_an_injected_fault_is_answered_in_each_exchanges_words_and_counted(exchange):
    name, sandbox = exchange
    _, path, params, status, code = EXCHANGES[name]
    # The session's services may call the same sandbox meanwhile (the whitelist reads symbol lists every second):
    # what this test adds is counted, not the totals.
    before = sandbox.admin.request_counts().get(f"GET {path}", {})
    sandbox.admin.set_fault("*", maintenance=True)
    refused = httpx.get(f"{sandbox.base_url}{path}", params=params, timeout=5)
    assert refused.status_code == status, refused.text
    if code is not None:
        assert str(refused.json()[code[0]]) == code[1]
    sandbox.admin.clear_faults()
    answered = httpx.get(f"{sandbox.base_url}{path}", params=params, timeout=5)
    assert answered.status_code == 200, answered.text
    counts = sandbox.admin.request_counts()[f"GET {path}"]
    assert counts["total"] - before.get("total", 0) >= 2 and counts["ok"] - before.get("ok", 0) >= 1
    assert len(counts) > 2  # the refusal is counted under an outcome of its own
