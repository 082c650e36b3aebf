"""The refusal every sandbox pipeline raises and answers with; each exchange's package builds its bodies."""

from typing import Any, ClassVar

from starlette.responses import JSONResponse, PlainTextResponse, Response


class Refusal(Exception):
    """An answer other than success. `outcome` labels it in the request counts: the body's error code (the first of
    `code_fields` the body has), or the HTTP status for a body that is not JSON."""

    # Where the exchange's envelope carries its error code; each exchange's subclass names its own.
    code_fields: ClassVar[tuple[str, ...]] = ("code",)

    def __init__(
        self, body: dict[str, Any] | str, *, http_status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body)
        self.body = body
        self.http_status = http_status
        self.headers = headers or {}

    @property
    def outcome(self) -> str:
        if isinstance(self.body, dict):
            return str(next((self.body[field] for field in self.code_fields if field in self.body), None))
        return f"http-{self.http_status}"

    def response(self) -> Response:
        if isinstance(self.body, dict):
            return JSONResponse(self.body, status_code=self.http_status, headers=self.headers)
        return PlainTextResponse(self.body, status_code=self.http_status, headers=self.headers, media_type="text/html")
