"""The `hash7` command line with a fake BindingClient: argument handling, secret input, tables, errors."""

import io
import json
import socket
from collections.abc import Iterator

import pytest
from aiokafka import ConsumerRecord
from click.testing import CliRunner, Result
from pydantic import SecretStr
from rich.console import Console

from shared.adapters.vault.client import VaultUnavailable
from shared.clients import console
from shared.clients.binding_client import BrokerUnavailable, CredentialsMissing, DeadLetterRecord
from shared.clients.cli import commands, plumbing
from shared.clients.console import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from shared.contracts import dead_letters
from shared.contracts.events import BindingStatus
from shared.contracts.reasons import Reason, ReasonCode
from shared.contracts.routing import Party, Topic
from shared.contracts.states import BindingState
from tests.clients.fakes import (
    ACCESS_KEY,
    MASKED_ACCESS_KEY,
    SECRET_KEY,
    FakeBindingClient,
    audit_event,
    dead_letter,
    status,
)
from tests.clients.hash7_process import hash7_environment, run_hash7

BIND = ["bind", "--user", "user-1", "--access-key", ACCESS_KEY]


@pytest.fixture(autouse=True)
def fake_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeBindingClient]]:
    FakeBindingClient.reset()
    monkeypatch.setattr(commands, "BindingClient", FakeBindingClient)
    # Logging is process-wide; the CLI's setup of it is not what these tests are about.
    monkeypatch.setattr(console, "configure_logging", lambda *args: None)
    yield FakeBindingClient


def invoke(args: list[str], stdin: str | None = None) -> Result:
    return CliRunner().invoke(commands.cli, args, input=stdin, prog_name="hash7")


def sent_secret() -> SecretStr:
    (call,) = [c for client in FakeBindingClient.instances for c in client.calls if c[0] == "bind"]
    secret = call[1][2]
    assert isinstance(secret, SecretStr)
    return secret


def assert_no_secret(result: Result) -> None:
    assert SECRET_KEY not in result.output
    assert ACCESS_KEY not in result.output


# ---- the secret never comes from argv ---------------------------------------------------------------------


def test_bind_has_no_option_that_takes_the_secret() -> None:
    result = invoke([*BIND, "--secret", SECRET_KEY])

    assert result.exit_code == EXIT_USAGE
    assert "No such option '--secret'" in result.output
    assert_no_secret(result)
    assert not FakeBindingClient.instances


def test_bind_refuses_a_positional_secret_without_echoing_it() -> None:
    result = invoke([*BIND, SECRET_KEY], stdin=SECRET_KEY)

    assert result.exit_code == EXIT_USAGE
    assert "never taken from the command line" in result.output
    assert_no_secret(result)
    assert not FakeBindingClient.instances


def test_bind_reads_the_secret_from_stdin_and_prints_the_timeline() -> None:
    FakeBindingClient.timeline = [status(BindingState.RECEIVED), status(BindingState.VALIDATED, seconds=1),
                                  status(BindingState.ACTIVE, seconds=2)]

    result = invoke([*BIND, "--secret-stdin", "--pairs", "BTCUSDT, ethusdt", "--label", " main "],
                    stdin=f"  {SECRET_KEY} \n")

    assert result.exit_code == EXIT_OK, result.output
    assert sent_secret().get_secret_value() == SECRET_KEY
    (bind_call,) = [c for c in FakeBindingClient.instances[-1].calls if c[0] == "bind"]
    assert bind_call[2]["trading_pairs"] == ["btcusdt", "ethusdt"]
    assert bind_call[2]["label"] == "main"
    for state in ("received", "validated", "active"):
        assert state in result.stdout
    assert "Binding bind-1 is active." in result.stdout
    assert MASKED_ACCESS_KEY in result.stderr
    assert_no_secret(result)


def test_bind_checks_kafka_and_vault_before_asking_for_the_secret() -> None:
    FakeBindingClient.failure = CredentialsMissing("no AppRole credentials for 'app': run the bootstrap")

    result = invoke([*BIND, "--secret-stdin"], stdin="")

    assert result.exit_code == EXIT_FAILED
    assert result.stderr.strip() == "Error: no AppRole credentials for 'app': run the bootstrap"


def test_bind_prompts_with_a_hidden_prompt_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = []

    def type_the_secret(prompt: str) -> str:
        prompts.append(prompt)
        return SECRET_KEY

    monkeypatch.setattr(plumbing, "_stdin_is_terminal", lambda: True)
    monkeypatch.setattr(plumbing.getpass, "getpass", type_the_secret)
    FakeBindingClient.timeline = [status(BindingState.AWAITING_WHITELIST)]

    result = invoke(BIND)

    assert result.exit_code == EXIT_OK, result.output
    assert prompts == ["HTX Secret Key (hidden): "]
    assert sent_secret().get_secret_value() == SECRET_KEY


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        ([*BIND, "--secret-stdin"], "\n", "stdin holds no secret key"),
        (BIND, SECRET_KEY, "pipe the secret key with --secret-stdin"),
    ],
    ids=["empty-stdin", "no-terminal-for-a-prompt"],
)
def test_bind_without_a_secret_is_a_usage_error(args: list[str], stdin: str, message: str) -> None:
    result = invoke(args, stdin=stdin)

    assert result.exit_code == EXIT_USAGE
    assert message in result.output
    assert_no_secret(result)


def test_bind_without_waiting_prints_the_request_id() -> None:
    result = invoke([*BIND, "--secret-stdin", "--no-wait"], stdin=SECRET_KEY)

    assert result.exit_code == EXIT_OK
    assert result.stdout.strip() == "req-1"
    assert not [c for c in FakeBindingClient.instances[-1].calls if c[0] == "wait_for"]


def test_a_rejected_binding_shows_reasons_with_hints_and_exits_3() -> None:
    FakeBindingClient.timeline = [
        status(BindingState.RECEIVED),
        status(BindingState.REJECTED, seconds=1, reasons=[ReasonCode.PERMISSION_WITHDRAW_FORBIDDEN]),
    ]

    result = invoke([*BIND, "--secret-stdin"], stdin=SECRET_KEY)

    assert result.exit_code == EXIT_REFUSED
    assert "permission_withdraw_forbidden" in result.stdout
    assert "untick 'Withdraw'" in result.stdout
    assert "ended rejected (permission_withdraw_forbidden)" in result.stdout
    assert_no_secret(result)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["bind", "--user", "../etc/passwd", "--access-key", ACCESS_KEY], "--user"),
        (["bind", "--user", "user-1", "--access-key", "not a key!"], "--access-key"),
        ([*BIND, "--pairs", ",".join(f"pair{n}" for n in range(201))], "--pairs"),
        (["whitelist", "--user", "user-1", "--binding", "bind/1", "--pairs", "btcusdt"], "--binding"),
        (["revoke", "--user", "user-1", "--binding", "bind-1", "--timeout", "0"], "--timeout"),
        (["audit", "--limit", "0"], "--limit"),
    ],
    ids=["user", "access-key", "too-many-pairs", "binding", "timeout", "limit"],
)
def test_bad_input_is_a_clear_usage_error(args: list[str], option: str) -> None:
    result = invoke(args, stdin=SECRET_KEY)

    assert result.exit_code == EXIT_USAGE
    assert f"Invalid value for '{option}'" in result.output
    assert "Traceback" not in result.output
    assert "not a key!" not in result.output


def test_help_documents_the_exit_codes() -> None:
    result = invoke(["bind", "--help"])

    assert result.exit_code == 0
    assert "never accepted" in result.output
    assert "3  refused" in result.output


@pytest.mark.parametrize(
    "failure",
    [
        BrokerUnavailable("Kafka is unreachable at 127.0.0.1:1 (KafkaConnectionError)"),
        VaultUnavailable("Vault unreachable (ConnectionError)"),
        RuntimeError("something nobody expected: token='hvs.abcdefghijklmnopqrstuvwxyz'"),
    ],
    ids=["kafka", "vault", "unexpected"],
)
def test_failures_are_one_red_line_and_exit_1(failure: Exception) -> None:
    FakeBindingClient.failure = failure

    result = invoke(["whitelist", "--user", "user-1", "--binding", "bind-1", "--pairs", "btcusdt"])

    assert result.exit_code == EXIT_FAILED
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ")
    assert "Traceback" not in result.output
    assert "hvs.abcdefghijklmnopqrstuvwxyz" not in result.output


def test_a_timeout_shows_what_arrived_and_exits_1() -> None:
    FakeBindingClient.timeline = [status(BindingState.RECEIVED, binding_id=None)]

    result = invoke(["revoke", "--user", "user-1", "--binding", "bind-1", "--timeout", "5"])

    assert result.exit_code == EXIT_FAILED
    assert "received" in result.stdout
    assert "Error: no rejected/revoked status for request req-1 within 5s (states seen: received)" in result.stderr


def test_revoke_ends_well_when_revoked() -> None:
    FakeBindingClient.timeline = [status(BindingState.REVOKED)]

    result = invoke(["revoke", "--user", "user-1", "--binding", "bind-1"])

    assert result.exit_code == EXIT_OK
    assert ("revoke", ("user-1", "bind-1"), {}) in FakeBindingClient.instances[-1].calls


def test_whitelist_accepts_an_empty_list_to_clear_it() -> None:
    FakeBindingClient.timeline = [status(BindingState.AWAITING_WHITELIST, reasons=[ReasonCode.WHITELIST_EMPTY])]

    result = invoke(["whitelist", "--user", "user-1", "--binding", "bind-1", "--pairs", ""])

    assert result.exit_code == EXIT_OK, result.output
    assert ("set_whitelist", ("user-1", "bind-1", []), {}) in FakeBindingClient.instances[-1].calls


# ---- reading topics ---------------------------------------------------------------------------------------


def test_timeline_passes_the_filters_and_prints_a_table() -> None:
    FakeBindingClient.statuses_on_topic = [
        status(BindingState.REJECTED, seconds=5, reasons=[ReasonCode.IP_BINDING_INCOMPLETE],
               missing_ips=["203.0.113.11"]),
        status(BindingState.RECEIVED),
    ]

    result = invoke(["timeline", "--user", "user-1", "--binding", "bind-1"])

    assert result.exit_code == EXIT_OK, result.output
    (call,) = FakeBindingClient.instances[-1].calls
    assert call[2]["user_id"] == "user-1" and call[2]["binding_id"] == "bind-1" and call[2]["request_id"] is None
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["Time", "(UTC)", "State", "Request"]
    # Oldest first, whatever order the topic gave.
    assert result.stdout.index("received") < result.stdout.index("rejected")
    assert "missing: 203.0.113.11" in result.stdout


def test_audit_shows_the_newest_events_with_masked_keys_only() -> None:
    FakeBindingClient.audit_on_topic = [
        audit_event(seconds=n, service=f"service_{n}", reason_codes=[ReasonCode.KEY_EXPIRING]) for n in (3, 1, 2, 0)
    ]

    result = invoke(["audit", "--limit", "2"])

    assert result.exit_code == EXIT_OK, result.output
    assert "service_0" not in result.stdout and "service_1" not in result.stdout
    assert result.stdout.index("service_2") < result.stdout.index("service_3")
    assert MASKED_ACCESS_KEY in result.stdout
    assert "key_expiring" in result.stdout
    assert_no_secret(result)


@pytest.mark.parametrize(("command", "reader"), [
    (["timeline", "--user", "user-1"], Party.APP), (["audit"], Party.OPS), (["dead-letters"], Party.OPS)])
def test_each_topic_is_read_as_the_party_the_routing_table_has_consume_it(command: list[str], reader: Party) -> None:
    result = invoke(command)

    assert result.exit_code == EXIT_OK, result.output
    assert FakeBindingClient.instances[-1].reader is reader


def test_audit_follow_prints_new_rows_after_the_backlog() -> None:
    FakeBindingClient.audit_on_topic = [audit_event(service="before")]
    FakeBindingClient.arriving_later = [audit_event(seconds=10, service="after")]

    result = invoke(["audit", "--follow"])

    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout.count("Time (UTC)") == 1
    assert result.stdout.index("before") < result.stdout.index("after")


def test_dead_letters_table_shows_origin_error_and_preview() -> None:
    FakeBindingClient.dead_letters_on_topic = [dead_letter(preview='{"secret_key_sealed": "[REDACTED]"}')]

    result = invoke(["dead-letters"])

    assert result.exit_code == EXIT_OK, result.output
    for expected in ("t.binding.requested/2/41", "MalformedEvent", "body is not JSON", "intake", "300000 B (cut)",
                     '"secret_key_sealed": "[REDACTED]"'):
        assert expected in result.stdout


def test_an_empty_topic_says_so() -> None:
    result = invoke(["dead-letters"])

    assert result.exit_code == EXIT_OK
    assert "No dead letters." in result.stderr


def test_skipped_records_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    class SkippingClient(FakeBindingClient):
        def audit_events(self, **options: object):  # type: ignore[no-untyped-def]
            self.unparseable_records[Topic.AUDIT] += 2
            return super().audit_events(**options)

    monkeypatch.setattr(commands, "BindingClient", SkippingClient)
    result = invoke(["audit"])

    assert "Skipped 2 record(s) on audit that are not valid events." in result.stderr


# ---- hostile text from topics, dead letters and servers is shown, never obeyed -----------------------------

# What a producer, a broken service or HTX could put in a string to take over the terminal or mislead a reader.
HOSTILE = {
    "clear screen": "\x1b[2J",
    "alternate screen": "\x1b[?1049h",
    "window title": "\x1b]0;pwned\x07",
    "8-bit CSI": "\x9b31m",
    "bell": "\x07",
    "backspace": "\x08",
    "carriage return": "ok\rFAKE",
    "right-to-left override": "\u202etxt.exe",
    "bidi isolates": "\u2066\u2067\u2068\u2069",
    "zero width": "a\u200bb\u200dc\ufeff",
    "line separator": "x\u2028y",
    "newline": "one\nFAKE ROW",
}
MARKUP = "[bold red]MARKUP[/bold red] [link=https://evil.example]LINK[/link]"
ALL_HOSTILE = " ".join(HOSTILE.values())


@pytest.fixture
def wide_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    # Wide enough that no cell folds: each hostile value is then found whole in the output.
    monkeypatch.setattr(console.stdout, "width", 3000)


def assert_shown_not_obeyed(output: str) -> None:
    """Nothing a terminal acts on reaches it: every character is printable, but the line breaks of the layout."""
    raw = sorted({f"U+{ord(char):04X}" for char in output if not char.isprintable() and char != "\n"})
    assert raw == [], f"raw control characters printed: {raw}"
    for visible in ("\\x1b[2J", "\\x1b]0;pwned\\x07", "\\x9b31m", "\\u202etxt.exe", "\\u200b", "ok\\rFAKE"):
        assert visible in output
    assert MARKUP in output


def hostile_status(state: BindingState, seconds: int = 0) -> BindingStatus:
    hostile_reason = Reason(code=ReasonCode.KEY_EXPIRING, message=f"{ALL_HOSTILE} {MARKUP}", hint=ALL_HOSTILE)
    return status(state, seconds=seconds, reasons=()).model_copy(
        update={"reasons": [hostile_reason], "binding_id": f"b{HOSTILE['window title']}", "request_id": MARKUP})


def test_timeline_shows_hostile_reasons_and_ids_escaped(wide_screen: None) -> None:
    FakeBindingClient.statuses_on_topic = [hostile_status(BindingState.REJECTED)]

    result = invoke(["timeline", "--user", "user-1"])

    assert result.exit_code == EXIT_OK, result.output
    assert_shown_not_obeyed(result.stdout)
    # A value's own line break is escaped: it cannot start a row of its own.
    assert not any(line.lstrip().startswith("FAKE ROW") for line in result.stdout.splitlines())


def test_bind_shows_a_hostile_timeline_and_final_line_escaped(wide_screen: None) -> None:
    FakeBindingClient.timeline = [hostile_status(BindingState.REJECTED)]

    result = invoke([*BIND, "--secret-stdin"], stdin=SECRET_KEY)

    assert result.exit_code == EXIT_REFUSED
    assert_shown_not_obeyed(result.stdout)
    assert "Binding b\\x1b]0;pwned\\x07 ended rejected (key_expiring)." in result.stdout


def test_audit_shows_hostile_fields_escaped(wide_screen: None) -> None:
    FakeBindingClient.audit_on_topic = [audit_event().model_copy(update={
        "service": HOSTILE["clear screen"], "action": f"{ALL_HOSTILE} {MARKUP}", "outcome": HOSTILE["8-bit CSI"],
        "user_id": HOSTILE["right-to-left override"], "binding_id": HOSTILE["window title"],
        "access_key_masked": HOSTILE["zero width"],
    })]

    result = invoke(["audit"])

    assert result.exit_code == EXIT_OK, result.output
    assert_shown_not_obeyed(result.stdout)


def hostile_dead_letter_record() -> DeadLetterRecord:
    """A dead letter as the real reader makes it from the topic: hostile headers and a hostile JSON body."""
    body = json.dumps({"label": f"{ALL_HOSTILE} {MARKUP}", "exchange": HOSTILE["8-bit CSI"]},
                      ensure_ascii=False).encode()
    headers = {
        dead_letters.ORIGINAL_TOPIC: HOSTILE["alternate screen"],
        dead_letters.EXCEPTION_TYPE: HOSTILE["right-to-left override"],
        dead_letters.EXCEPTION_MESSAGE: f"{ALL_HOSTILE} {MARKUP}",
        dead_letters.SERVICE: HOSTILE["window title"],
    }
    record = ConsumerRecord(topic="hash7.dead-letter", partition=0, offset=1, timestamp=0, timestamp_type=0,
                            key=HOSTILE["clear screen"].encode(), value=body, checksum=None, serialized_key_size=4,
                            serialized_value_size=len(body),
                            headers=[(name, text.encode()) for name, text in headers.items()])
    return DeadLetterRecord.from_record(record)


@pytest.mark.parametrize("follow", [False, True], ids=["backlog", "following"])
def test_dead_letters_show_hostile_headers_and_bodies_escaped(follow: bool, wide_screen: None) -> None:
    FakeBindingClient.dead_letters_on_topic = [hostile_dead_letter_record()]
    FakeBindingClient.arriving_later = [hostile_dead_letter_record()]

    result = invoke(["dead-letters", "--follow"] if follow else ["dead-letters"])

    assert result.exit_code == EXIT_OK, result.output
    assert_shown_not_obeyed(result.stdout)
    assert "\\x1b[?1049h" in result.stdout


def test_a_hostile_server_message_in_an_error_is_escaped() -> None:
    FakeBindingClient.failure = VaultUnavailable(f"Vault said {HOSTILE['window title']}{HOSTILE['clear screen']} "
                                                 f"{MARKUP}")

    result = invoke(["revoke", "--user", "user-1", "--binding", "bind-1"])

    assert result.exit_code == EXIT_FAILED
    assert [char for char in result.stderr if not char.isprintable() and char != "\n"] == []
    (line,) = result.stderr.strip().splitlines()
    assert line.endswith(f": Vault said \\x1b]0;pwned\\x07\\x1b[2J {MARKUP}")


# ---- the installed entry point, as a person runs it -------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_kafka_is_one_line_without_a_traceback() -> None:
    completed = run_hash7(["timeline", "--user", "user-1"],
                          hash7_environment(HASH7_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed_port()}"))

    assert completed.returncode == EXIT_FAILED
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith("Error: Kafka is unreachable at 127.0.0.1:")
    assert completed.stdout == ""


def test_missing_approle_credentials_stop_bind_before_the_secret_is_read(tmp_path) -> None:
    completed = run_hash7([*BIND, "--secret-stdin"], hash7_environment(HASH7_RUN_DIR=str(tmp_path)), stdin=SECRET_KEY)

    assert completed.returncode == EXIT_FAILED
    assert "Error: no AppRole credentials for 'app'" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert SECRET_KEY not in completed.stderr + completed.stdout


def test_bad_settings_are_one_line(tmp_path) -> None:
    completed = run_hash7(["audit"], hash7_environment(HASH7_VAULT_TIMEOUT_S="soon"))

    assert completed.returncode == EXIT_FAILED
    assert completed.stderr.startswith("Error: bad configuration: HASH7_VAULT_TIMEOUT_S:")
    assert "Traceback" not in completed.stderr


def test_unreachable_vault_stops_bind_before_the_secret_is_read() -> None:
    vault_addr = f"http://127.0.0.1:{closed_port()}"
    completed = run_hash7([*BIND, "--secret-stdin"], hash7_environment(
        HASH7_VAULT_ADDR=vault_addr, HASH7_VAULT_ROLE_ID="app-role", HASH7_VAULT_SECRET_ID="app-secret-id",
    ), stdin=SECRET_KEY)

    assert completed.returncode == EXIT_FAILED
    assert completed.stderr.strip() == f"Error: Vault at {vault_addr}: Vault unreachable (ConnectionError)"
    assert "app-secret-id" not in completed.stderr


def test_forged_records_skipped_on_a_topic_are_said_after_its_table() -> None:
    FakeBindingClient.dead_letters_on_topic = [dead_letter()]
    FakeBindingClient.forged_on_topic = {Topic.DEAD_LETTER: 2}

    result = invoke(["dead-letters"])

    assert result.exit_code == EXIT_OK, result.output
    assert "Skipped 2 record(s) on dead-letter that no allowed producer signed" in result.stderr


# ---- --output json: one JSON document per record, for machines --------------------------------------------


def json_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines()]


def test_json_output_is_one_line_per_record_as_the_contract_dumps_it() -> None:
    first, second = status(BindingState.RECEIVED), status(BindingState.ACTIVE, seconds=1)
    FakeBindingClient.statuses_on_topic = [second, first]

    result = invoke(["--output", "json", "timeline", "--user", "user-1"])

    assert result.exit_code == EXIT_OK, result.output
    assert json_lines(result.stdout) == [first.model_dump(mode="json"), second.model_dump(mode="json")]


def test_json_output_streams_what_arrives_while_following() -> None:
    FakeBindingClient.dead_letters_on_topic = [dead_letter()]
    FakeBindingClient.arriving_later = [dead_letter(preview='{"secret_key": "s3cr3t-value"}', seconds=5)]

    result = invoke(["--output", "json", "dead-letters", "--follow"])

    assert result.exit_code == EXIT_OK, result.output
    backlog, arrived = json_lines(result.stdout)
    assert backlog["original_topic"] == "t.binding.requested" and backlog["original_offset"] == 41
    assert backlog["failed_at"] == "2026-05-04T12:00:00Z" and backlog["truncated"] is True
    # Scrubbed as the table shows it.
    assert "s3cr3t-value" not in result.stdout and "[REDACTED]" in str(arrived["body_preview"])


def test_json_output_escapes_what_a_terminal_would_obey() -> None:
    FakeBindingClient.dead_letters_on_topic = [hostile_dead_letter_record()]

    result = invoke(["--output", "json", "dead-letters"])

    assert result.exit_code == EXIT_OK, result.output
    assert all(char.isascii() and (char.isprintable() or char == "\n") for char in result.stdout)
    (letter,) = json_lines(result.stdout)
    assert letter["original_topic"] == HOSTILE["alternate screen"]  # escaped on screen, intact for a machine


def test_bind_with_json_output_prints_the_timeline_and_exits_with_its_outcome() -> None:
    FakeBindingClient.timeline = [status(BindingState.RECEIVED),
                                  status(BindingState.REJECTED, seconds=1, reasons=[ReasonCode.KEY_INVALID])]

    result = invoke(["--output", "json", *BIND, "--secret-stdin"], stdin=SECRET_KEY)

    assert result.exit_code == EXIT_REFUSED
    assert [line["state"] for line in json_lines(result.stdout)] == ["received", "rejected"]
    assert_no_secret(result)


def test_no_wait_with_json_output_prints_the_request_id_as_json() -> None:
    result = invoke(["--output", "json", *BIND, "--secret-stdin", "--no-wait"], stdin=SECRET_KEY)

    assert result.exit_code == EXIT_OK
    assert json_lines(result.stdout) == [{"request_id": "req-1"}]


def test_version_names_the_program() -> None:
    result = invoke(["--version"])

    assert result.exit_code == EXIT_OK
    assert result.stdout.startswith("hash7, version ")


# ---- waiting shows what for, where, and for how long ------------------------------------------------------


@pytest.fixture
def terminal_stderr(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """stderr as a terminal shows it (progress lines are drawn only on a terminal), recorded."""
    screen = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=screen, force_terminal=True, width=300, highlight=False))
    return screen


def test_waiting_for_an_outcome_shows_the_request_the_topic_the_broker_and_the_seconds(
        terminal_stderr: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HASH7_KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    monkeypatch.setenv("HASH7_TOPIC_PREFIX", "p.")
    FakeBindingClient.timeline = [status(BindingState.REVOKED)]

    result = invoke(["revoke", "--user", "user-1", "--binding", "bind-1"])

    assert result.exit_code == EXIT_OK, result.output
    shown = terminal_stderr.getvalue()
    assert "Waiting for request req-1's final status on p.binding.status (Kafka at kafka.example:9092)" in shown
    assert "0:00:00" in shown  # the elapsed time, which rich keeps counting while nothing arrives


# ---- an OKX key's passphrase ------------------------------------------------------------------------------------

PASSPHRASE = "Okx passphrase 1!"
OKX_BIND = [*BIND, "--exchange", "okx"]


def sent_bind_options() -> dict[str, object]:
    (call,) = [c for client in FakeBindingClient.instances for c in client.calls if c[0] == "bind"]
    return call[2]


def assert_no_passphrase(result: Result) -> None:
    assert PASSPHRASE not in result.output
    assert_no_secret(result)


def test_bind_reads_an_okx_passphrase_from_stdins_second_line() -> None:
    FakeBindingClient.timeline = [status(BindingState.ACTIVE)]

    result = invoke([*OKX_BIND, "--secret-stdin"], stdin=f"{SECRET_KEY}\n{PASSPHRASE}\n")

    assert result.exit_code == EXIT_OK, result.output
    options = sent_bind_options()
    assert options["exchange"] == "okx"
    passphrase = options["passphrase"]
    assert isinstance(passphrase, SecretStr) and passphrase.get_secret_value() == PASSPHRASE
    assert sent_secret().get_secret_value() == SECRET_KEY
    assert_no_passphrase(result)


def test_bind_asks_for_an_okx_passphrase_at_a_second_hidden_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    typed = iter([SECRET_KEY, PASSPHRASE])
    prompts = []

    def type_it(prompt: str) -> str:
        prompts.append(prompt)
        return next(typed)

    monkeypatch.setattr(plumbing, "_stdin_is_terminal", lambda: True)
    monkeypatch.setattr(plumbing.getpass, "getpass", type_it)
    FakeBindingClient.timeline = [status(BindingState.ACTIVE)]

    result = invoke(OKX_BIND)

    assert result.exit_code == EXIT_OK, result.output
    assert prompts == ["OKX Secret Key (hidden): ", "OKX Passphrase (hidden): "]
    assert sent_bind_options()["passphrase"].get_secret_value() == PASSPHRASE  # type: ignore[attr-defined]
    assert_no_passphrase(result)


@pytest.mark.parametrize("exchange", ["htx", "bybit"])
def test_bind_asks_no_passphrase_for_other_exchanges(exchange: str) -> None:
    FakeBindingClient.timeline = [status(BindingState.ACTIVE)]

    result = invoke([*BIND, "--exchange", exchange, "--secret-stdin"], stdin=f"{SECRET_KEY}\n{PASSPHRASE}\n")

    assert result.exit_code == EXIT_OK, result.output
    assert sent_bind_options()["passphrase"] is None
    assert sent_bind_options()["exchange"] == exchange


def test_bind_of_an_okx_key_without_a_passphrase_on_stdin_is_a_one_line_usage_error() -> None:
    result = invoke([*OKX_BIND, "--secret-stdin"], stdin=f"{SECRET_KEY}\n")

    assert result.exit_code == EXIT_USAGE
    assert "stdin holds no passphrase on its second line" in result.output
    assert "Traceback" not in result.output
    assert not [c for client in FakeBindingClient.instances for c in client.calls if c[0] == "bind"]


def test_bind_refuses_an_exchange_it_does_not_know() -> None:
    result = invoke([*BIND, "--exchange", "binance", "--secret-stdin"], stdin=SECRET_KEY)

    assert result.exit_code == EXIT_USAGE
    assert "--exchange" in result.output


def test_bind_help_says_where_the_passphrase_comes_from() -> None:
    result = invoke(["bind", "--help"])

    assert result.exit_code == EXIT_OK
    assert "--exchange [htx|bybit|okx]" in result.output
    assert "Passphrase" in result.output and "second line" in result.output
