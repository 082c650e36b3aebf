"""Signed HTX queries built by a test as an independent HTX client would, holding the secret: for the vectors of
shared/adapters/htx/README.md#test-vectors and the tests that drive the sandbox over raw HTTP. Synchronous, so
those tests stay plain functions; Hash7's own client signs through a RequestSigner
(shared/adapters/request_signing.py).
"""

from collections.abc import Mapping
from datetime import datetime

from pydantic import SecretStr

from shared.adapters.htx.signing import SIGNATURE_PARAM, compute_signature, pre_sign_text, unsigned_query


def signed_query(*, access_key: str, secret_key: SecretStr, method: str, host: str, path: str, timestamp: datetime,
                 params: Mapping[str, str] | None = None) -> dict[str, str]:
    """params, the four auth parameters and `Signature` over all of them (a POST's callers pass no params)."""
    query = unsigned_query(access_key=access_key, timestamp=timestamp, params=params)
    query[SIGNATURE_PARAM] = compute_signature(secret_key, pre_sign_text(method, host, path, query.items()))
    return query
