"""structlog setup for every process: JSON lines (pretty in a terminal), each with service and event, and a
redaction processor that removes anything secret-shaped, even from a whole object logged by mistake."""

import logging
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any, Literal, cast

import structlog
from pydantic import BaseModel, SecretBytes, SecretStr

from shared.contracts.secrets import mask_access_key

REDACTED = "[REDACTED]"

# Field names whose values are secrets whatever they look like (compared lower-case, '-' as '_').
_SECRET_FIELD = re.compile(
    r"(secret|token|password|passwd|unseal|private_key|signature|authorization|ciphertext|sealed|"
    r"credential|api_key_secret|hmac|x_vault_token)"
)
_ACCESS_KEY_FIELD = re.compile(r"^(access_?key|accesskeyid)$")
# Secret-shaped values, wherever they hide in a string. A pattern with a group keeps that group (the
# field name and separator) and replaces only the value.
_VALUE_PATTERNS = [
    # Vault/OpenBao Transit ciphertext and HMACs.
    re.compile(r"vault:v\d+:[A-Za-z0-9+/=]+"),
    # Vault (hvs./hvb./hvr.) and OpenBao (s./b./r.) tokens.
    re.compile(r"\b(?:hv[sbr]|[sbr])\.[A-Za-z0-9_-]{20,}"),
    # HTX signed URLs and form bodies: the signature, the access key and any secret in a query string.
    re.compile(r"(?i)((?:Signature|AccessKeyId|accessKey|secret_?id|secret_?key)=)[^&\s\"']+"),
    # JSON or repr of a secret-named field inside a string, e.g. an exception message.
    re.compile(
        r"""(?i)(["']?(?:secret_?key|secret_?id|client_token|root_token|unseal_key|token|password)["']?\s*[:=]\s*)"""
        r"""(?:"[^"]*"|'[^']*')"""
    ),
]


def _scrub_string(text: str) -> str:
    for pattern in _VALUE_PATTERNS:
        text = pattern.sub((r"\g<1>" if pattern.groups else "") + REDACTED, text)
    return text


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
        return _scrub_string(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, BaseException):
        return _scrub_string(f"{type(value).__name__}: {value}")
    return _scrub_string(str(value))


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
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
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
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
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
