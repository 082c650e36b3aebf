import json
import logging
from dataclasses import dataclass

import structlog
from pydantic import SecretStr

from shared.contracts.events import BindingRequested, utc_now
from shared.runtime.logging import REDACTED, configure_logging, redact

SECRET = "c405c550-6fa0583b-fb4bc38e-d317e"
SEALED = "vault:v1:QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
TOKEN = "s.AbCdEfGhIjKlMnOpQrStUvWx"


@dataclass
class Credentials:
    access_key: str
    secret_key: str


def test_secret_named_fields_are_removed_anywhere_in_a_structure():
    cleaned = redact({"user": "u1", "nested": [{"secret_key": SECRET}, {"secret_id": "x"}], "client_token": TOKEN})
    assert SECRET not in str(cleaned) and TOKEN not in str(cleaned)
    assert cleaned["user"] == "u1" and cleaned["nested"][0]["secret_key"] == REDACTED


def test_whole_objects_logged_by_mistake_are_walked():
    request = BindingRequested(request_id="r", user_id="u", exchange="htx", access_key="e2xxxxxx-99xxxxxx-84xx",
                               secret_key_sealed=SEALED, requested_at=utc_now())
    cleaned = str(redact({"request": request, "creds": Credentials("e2xxxxxx-99xxxxxx-84xx", SECRET)}))
    assert SECRET not in cleaned and SEALED not in cleaned and "e2xxxxxx-99xxxxxx-84xx" not in cleaned
    assert "e2xx…84xx" in cleaned


def test_secret_shapes_are_scrubbed_from_free_text_and_exceptions():
    text = (f"GET /v2/user/uid?AccessKeyId=abc&Signature=zzz%3D failed; token {TOKEN}; ct {SEALED}; "
            f"body {{\"secret_key\": \"{SECRET}\"}}")
    cleaned = redact(text)
    for leaked in (TOKEN, SEALED, SECRET, "zzz%3D", "AccessKeyId=abc"):
        assert leaked not in cleaned
    assert SECRET not in redact(ValueError(f"bad secret_key='{SECRET}'"))
    assert redact(SecretStr(SECRET)) == REDACTED


def test_configured_logging_redacts_structlog_and_stdlib_lines(capsys):
    configure_logging("unit-test", fmt="json", level="INFO")
    structlog.get_logger("t").info("binding", secret_key=SECRET, detail={"token": TOKEN},
                                   access_key="e2xxxxxx-99xxxxxx")
    logging.getLogger("aiokafka.like").warning("url %s", f"http://h/?Signature=abc&AccessKeyId=e2xxxxxx&x={SEALED}")
    try:
        raise RuntimeError(f"vault said {TOKEN}")
    except RuntimeError:
        structlog.get_logger("t").exception("failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    output = json.dumps(lines)
    assert len(lines) == 3
    for leaked in (SECRET, TOKEN, SEALED, "e2xxxxxx-99xxxxxx"):
        assert leaked not in output
    assert all(line["service"] == "unit-test" for line in lines)
    assert lines[0]["event"] == "binding" and lines[0]["access_key"] == "e2xx…xxxx"
