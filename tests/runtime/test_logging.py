import json
import logging
import time
import uuid
from dataclasses import dataclass

import pytest
import structlog
from pydantic import SecretStr

from shared.contracts.events import BindingRequested, utc_now
from shared.runtime.logging import REDACTED, configure_logging, redact, scrub_secret_shapes, terminal_safe

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


# ---- the shapes of secrets, and what is not one ------------------------------------------------------------

VAULT_TOKEN = "hvs.CAESIJlWh0Mn8nPPNSuBZbSCkRbeyTQGfrz2"
RANDOM_KEY = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdI"
HEX_KEY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
# The shape of an OKX secret key (shared/adapters/okx/README.md#signing): 32 upper-case hex characters.
OKX_SECRET = "D2D82B763AAE5CEB1B8FE7730F46CE6F"
PEM = ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n"
       "-----END EC PRIVATE KEY-----")


@pytest.mark.parametrize(
    "secret", [SECRET, VAULT_TOKEN, RANDOM_KEY, HEX_KEY, PEM, SEALED, OKX_SECRET, uuid.uuid4().hex.upper()],
    ids=["htx-secret", "vault-token", "random-base64", "long-hex", "pem", "ciphertext", "okx-secret", "okx-random"],
)
def test_a_secret_shape_is_scrubbed_wherever_it_sits_in_text(secret: str) -> None:
    for text in (secret, f"before {secret} after", f"x={secret}", f'{{"note": "{secret}"}}', f"({secret})"):
        assert secret not in scrub_secret_shapes(text), text


@pytest.mark.parametrize(
    "text",
    [
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427",  # an event id (a standard UUID)
        uuid.uuid4().hex,  # a request id
        str(uuid.uuid4()).upper(),  # a UUID in upper case
        "0123456789abcdef0123456789abcdef",  # lower-case hex as long as an OKX secret
        "2026-05-04T12:00:00.123456+00:00",
        "e2xx…84xx",  # a masked access key
        "binding_validated for user alice on hash7.binding.validated",
        "HashSevenBindingRequestedVersion",
        "shared/runtime/dead_letters.py:42",  # a path in a message
    ],
)
def test_what_only_looks_long_or_dashed_is_kept(text: str) -> None:
    assert scrub_secret_shapes(text) == text


def test_a_dead_letter_keeps_ciphertext_that_a_log_removes() -> None:
    text = f'"secret_key_sealed": "{SEALED}", ct {SEALED}'

    assert scrub_secret_shapes(text, keep_sealed=True) == text
    assert SEALED not in scrub_secret_shapes(text)


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("db_password: 'hunter2' then", "db_password: '[REDACTED]' then"),
        ('{"Api-Secret": "a \\"quoted\\" one", "n": 1}', '{"Api-Secret": "[REDACTED]", "n": 1}'),
        ('{"passphrase": {"a": "b"}, "n": 1}', '{"passphrase": "[REDACTED]", "n": 1}'),
        ('{"token": ["a", "b"]}', '{"token": "[REDACTED]"}'),
        ('cut short: {"password": "hunter2 and mo', 'cut short: {"password": "[REDACTED]"'),
        ("privateKey=abc&x=1", "privateKey=[REDACTED]&x=1"),
    ],
)
def test_a_secret_named_value_goes_and_its_name_and_json_shape_stay(text: str, scrubbed: str) -> None:
    assert scrub_secret_shapes(text) == scrubbed


def test_hostile_text_cannot_make_the_scrubbing_slow() -> None:
    started = time.perf_counter()
    for text in ("a " * 100_000, "a" * 200_000, "secret " * 30_000, "xsecretx" * 25_000, "Ab1" * 70_000,
                 "secret=" * 30_000, '"password": "' * 15_000, "-----BEGIN PRIVATE KEY-----" * 8_000):
        scrub_secret_shapes(text)
    # Linear in the text: about a second per megabyte here on a loaded machine; quadratic would be minutes.
    assert time.perf_counter() - started < 10


# ---- nothing a terminal acts on is written raw ---------------------------------------------------------------

HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b31m\x08\r\n\t\x7f\u202e\u2066\u2069\u200b\u200d\ufeff\u2028\ud800\U000e0001"


def test_terminal_safe_escapes_every_control_and_format_character_visibly() -> None:
    shown = terminal_safe(f"ok {HOSTILE} 中文 ünï")

    assert all(char.isprintable() for char in shown)
    assert shown == ("ok \\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x08\\r\\n\\t\\x7f\\u202e\\u2066\\u2069\\u200b\\u200d"
                     "\\ufeff\\u2028\\ud800\\U000e0001 中文 ünï")


def test_json_log_lines_escape_what_json_leaves_raw(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("unit-test", fmt="json", level="INFO")
    structlog.get_logger("t").info("hostile", label=f"中 {HOSTILE}", nested={"x": [HOSTILE]})

    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert all(char.isprintable() for char in line), [char for char in line if not char.isprintable()]
    fields = json.loads(line)
    assert fields["label"] == f"中 {HOSTILE}" and fields["nested"] == {"x": [HOSTILE]}  # the same JSON strings


def test_console_lines_escape_what_a_topic_put_in_a_value(capsys):
    configure_logging("test", fmt="console", level="INFO")
    structlog.get_logger("t").warning("event_rejected", claimed_producer="whitelist\x1b[2J\x9b\u202e")
    printed = capsys.readouterr().err
    assert "\x1b[2J" not in printed and "\x9b" not in printed and "\u202e" not in printed
    assert "\\x1b[2J" in printed
