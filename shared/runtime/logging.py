"""structlog setup for every process: JSON lines (pretty in a terminal), each with service and event, and a
redaction processor that removes anything secret-shaped, even from a whole object logged by mistake.

The secret shapes here are the one set every scrubber uses: `redact` for logs and what people see, and
shared/runtime/dead_letters.py for dead-letter bodies. `terminal_safe` is the one escaping of control
characters for anything printed (shared/clients/console.py)."""

import json
import logging
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any, Literal, cast

import structlog
from pydantic import BaseModel, SecretBytes, SecretStr

from shared.contracts.secrets import is_sealed, mask_access_key

REDACTED = "[REDACTED]"

# Words that make a field's value a secret whatever it looks like (names compared lower-case, '-' as '_').
_SECRET_WORDS = (r"secret|token|password|passwd|passphrase|unseal|private|signature|authorization|ciphertext|"
                 r"sealed|credential|hmac")
_SECRET_FIELD = re.compile(_SECRET_WORDS)
_ACCESS_KEY_FIELD = re.compile(r"^(access_?key|accesskeyid)$")

# Characters of base64 (standard and URL-safe) and hex runs; a run starts and ends where they stop.
_RUN = "A-Za-z0-9+/_\\-"
# Secret-shaped text, wherever it hides in a string (the one alternation is one pass over the text). Each
# shape is bounded or anchored at a word start, so hostile input cannot make the matching slow.
_SECRET_SHAPES = re.compile(
    # Vault/OpenBao Transit ciphertext, HMACs and signatures: removed from logs, kept in dead letters.
    r"(?P<sealed>vault:v\d+:[A-Za-z0-9+/=]+)"
    # PEM private keys, with their base64 lines (and "\n" escapes, in JSON text) up to the END line if any.
    r"|(?P<pem>-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----[A-Za-z0-9+/=\s\\]*(?:-----END [A-Z0-9 ]*-----)?)"
    # Vault (hvs./hvb./hvr.) and OpenBao (s./b./r.) tokens.
    r"|(?P<vault_token>\b(?:hv[sbr]|[sbr])\.[A-Za-z0-9_-]{20,})"
    # HTX access and secret keys: four dash-separated lower-case groups, 8-8-8-5 in the documented examples
    # (shared/adapters/htx/README.md); a standard UUID (8-4-4-4-12, event ids) does not match.
    r"|(?P<htx_key>\b[0-9a-z]{8}-[0-9a-z]{8}-[0-9a-z]{8}-[0-9a-z]{4,8}\b)"
    # A secret-named field with its value, in a query string, a repr, JSON text or an exception message:
    # the name and separator are kept, the value goes (unless the caller keeps sealed values). A quoted value,
    # or a flat object or list, may run to the end of the text: cut short, its start is still a secret.
    rf"|(?P<name>(?<![A-Za-z0-9_-])[\"']?[A-Za-z0-9_-]{{0,40}}?(?i:{_SECRET_WORDS}|accesskey)[A-Za-z0-9_-]{{0,40}}"
    r"[\"']?\s*[:=]\s*)(?P<value>\"(?:[^\"\\]|\\.)*(?:\"|\Z)|'(?:[^'\\]|\\.)*(?:'|\Z)"
    r"|\{[^{}]*(?:\}|\Z)|\[[^\[\]]*(?:\]|\Z)|[^\s&,;\"'{}\[\]]+)"
    # A long run of base64 or hex: judged by _looks_random.
    rf"|(?P<run>(?<![{_RUN}])[{_RUN}]{{32,}}={{0,2}}(?![{_RUN}=]))"
)


# Hex up to this many digits is an id, not a secret: request ids are uuid4().hex (shared/clients/binding_client.py).
_LONGEST_HEX_ID = 39


def _okx_secret_shaped(run: str) -> bool:
    """An OKX secret key: 32 upper-case hex characters in one piece (shared/adapters/okx/README.md#signing). Our ids
    are lower-case (uuid4().hex) or dashed (a UUID, even upper-case), so they stay."""
    return len(run) == 32 and run == run.upper() and any(c.isalpha() for c in run)


def _looks_random(run: str) -> bool:
    """Whether a long base64/hex run is a key or a token rather than a word: hex longer than an id, or a mix
    of upper case, lower case and digits that changes class at least every third character (about two in
    three for random base64; camel-case words change about once a word). No entropy library is a dependency,
    and entropy alone does not separate 32 random characters from a long identifier. Hex as long as an id is a
    secret in OKX's shape."""
    digits = run.rstrip("=").replace("-", "")
    if all(char in "0123456789abcdefABCDEF" for char in digits):
        return len(digits) > _LONGEST_HEX_ID or _okx_secret_shaped(run)
    if not (any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)):
        return False
    classes = ["u" if c.isupper() else "l" if c.islower() else "d" if c.isdigit() else "o" for c in run]
    changes = sum(first != second for first, second in zip(classes, classes[1:], strict=False))
    return changes * 3 >= len(run)


def scrub_secret_shapes(text: str, *, keep_sealed: bool = False) -> str:
    """text with every secret-shaped part replaced by [REDACTED]; Transit ciphertext too unless keep_sealed
    (a dead letter keeps the sealed secret it carries: it opens only in Vault)."""

    def replace(match: re.Match[str]) -> str:
        shape = match.lastgroup
        if shape == "value":
            value = match["value"]
            if keep_sealed and is_sealed(value.strip("\"'")):
                return match[0]
            # A quoted value keeps its quotes, and an object or a list becomes a string: JSON text stays JSON.
            quote = value[0] if value[0] in "\"'" else '"' if value[0] in "{[" else ""
            return f"{match['name']}{quote}{REDACTED}{quote}"
        if (shape == "sealed" and keep_sealed) or (shape == "run" and not _looks_random(match[0])):
            return match[0]
        return REDACTED

    return _SECRET_SHAPES.sub(replace, text)


def secret_field(name: str) -> bool:
    """Whether a field of that name holds a secret whatever its value looks like."""
    return _field_kind(name) == "secret"


def access_key_field(name: str) -> bool:
    return _field_kind(name) == "access_key"


# Any character outside printable ASCII is looked at; only those str.isprintable() refuses are escaped.
_NOT_PLAIN_ASCII = re.compile(r"[^\x20-\x7e]")


def terminal_safe(text: str) -> str:
    """text with every character a terminal could act on written as a visible escape: C0 and C1 controls (ESC,
    BEL, CR, the 8-bit CSI), DEL, bidi overrides and isolates, zero-width and other format characters, line
    separators, lone surrogates. Letters of every script stay as they are."""
    return _NOT_PLAIN_ASCII.sub(lambda match: _escaped(match[0], "unicode_escape"), text)


def _escaped(char: str, how: Literal["unicode_escape", "json"]) -> str:
    if char.isprintable():
        return char
    # JSON escapes: \uXXXX, a surrogate pair beyond the BMP; Python's: \x1b, \u202e, \U000e0001.
    return json.dumps(char)[1:-1] if how == "json" else char.encode("unicode_escape").decode("ascii")


def _json_line(value: Any, **options: Any) -> str:
    """A JSON log line in which no character a terminal could act on is left raw: json.dumps escapes C0
    controls, but not C1 controls, bidi overrides or U+2028 (an escape is the same JSON string)."""
    return _NOT_PLAIN_ASCII.sub(lambda match: _escaped(match[0], "json"), json.dumps(value, **options))


def _field_kind(name: str) -> Literal["secret", "access_key", "plain"]:
    normalised = name.lower().replace("-", "_")
    if _ACCESS_KEY_FIELD.match(normalised):
        return "access_key"
    if normalised.endswith("_masked"):
        return "plain"
    return "secret" if _SECRET_FIELD.search(normalised) else "plain"


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of value safe to log: secret-named fields and secret types removed, access keys masked,
    secret-shaped substrings scrubbed; models, dataclasses, mappings and sequences are walked."""
    if depth > 8:
        return "[…]"
    if isinstance(value, (SecretStr, SecretBytes)):
        return REDACTED
    if isinstance(value, BaseModel):
        value = {name: getattr(value, name) for name in type(value).model_fields}
    elif is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, Mapping):
        cleaned = {}
        for key, item in value.items():
            kind = _field_kind(str(key))
            if kind == "secret" and item not in (None, "", [], {}):
                cleaned[key] = REDACTED
            elif kind == "access_key" and isinstance(item, str):
                cleaned[key] = mask_access_key(item)
            else:
                cleaned[key] = redact(item, depth + 1)
        return cleaned
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(item, depth + 1) for item in value]
    if isinstance(value, str):
        return scrub_secret_shapes(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, BaseException):
        return scrub_secret_shapes(f"{type(value).__name__}: {value}")
    return scrub_secret_shapes(str(value))


def redaction_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    # exc_info is rendered later by format_exc_info; render it here first so the traceback is scrubbed too.
    return cast(dict[str, Any], redact(event_dict))


def _flatten_faststream_extra(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    # FastStream logs with extra={"topic", "group_id", "message_id"}: lift them to top-level fields.
    extra = event_dict.pop("extra", None)
    if isinstance(extra, Mapping):
        for key, item in extra.items():
            event_dict.setdefault(key, item)
    return event_dict


def _terminal_safe_values(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    # For a person's terminal: a value from a topic (a claimed producer, say) must not act on it. A traceback
    # keeps its lines (its text is ours, already redacted).
    return {key: terminal_safe(value) if isinstance(value, str) and key != "exception" else value
            for key, value in event_dict.items()}


def configure_logging(service: str, fmt: str = "auto", level: str = "INFO") -> None:
    """Configure structlog and route the standard library's logging (aiokafka, faststream, httpx) through
    the same processors, so every line is structured and redacted."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _flatten_faststream_extra,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redaction_processor,
    ]
    rendering: list[Any] = (
        [structlog.processors.JSONRenderer(_json_line, ensure_ascii=False)]
        if use_json
        else [_terminal_safe_values, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    structlog.configure(
        processors=[*shared[:1], structlog.stdlib.filter_by_level, *shared[1:],
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty at INFO about every group join, httpx about every request (a signed HTX URL, scrubbed
    # at a cost: a twelfth of the validator's CPU went to it); keep their warnings.
    for chatty in ("aiokafka", "httpx"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
