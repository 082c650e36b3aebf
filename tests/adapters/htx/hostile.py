"""A hostile HTX: a real HTTP/1.1 server on a loopback socket that answers every request with what a test
scripts, byte by byte if it likes (drips, endless bodies, corrupt encodings), and counts what it sent."""

import asyncio
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"
CHUNK = 64 * 1024


@dataclass
class HostileHtx:
    """How many requests reached the server and how many body bytes it managed to write."""

    base_url: str = ""
    requests: int = 0
    body_bytes_sent: int = 0
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)


Answer = Callable[[HostileHtx, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def hostile_htx(answer: Answer) -> AsyncIterator[HostileHtx]:
    htx = HostileHtx()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        htx._handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await _read_request(reader)
            htx.requests += 1
            await answer(htx, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: what a client that stops reading does
        except asyncio.CancelledError:
            pass  # the test is over; ending quietly keeps asyncio's server from logging the cancellation
        finally:
            writer.close()

    server = await asyncio.start_server(serve, LOOPBACK, 0)
    htx.base_url = f"http://{LOOPBACK}:{server.sockets[0].getsockname()[1]}"
    try:
        yield htx
    finally:
        server.close()
        for task in htx._handlers:
            task.cancel()
        await asyncio.gather(*htx._handlers, return_exceptions=True)


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            await reader.readexactly(int(value))


def head(*headers: str, status: str = "200 OK") -> bytes:
    # Connection: close, so a retry opens a new connection and is counted as a new request.
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def send_body(htx: HostileHtx, writer: asyncio.StreamWriter, body: bytes) -> None:
    for start in range(0, len(body), CHUNK):
        writer.write(body[start:start + CHUNK])
        await writer.drain()
        htx.body_bytes_sent += len(body[start:start + CHUNK])


def fixed(body: bytes, *headers: str, declare_length: bool = True) -> Answer:
    """Answer body whole; without declare_length the body ends when the connection does."""

    async def answer(htx: HostileHtx, writer: asyncio.StreamWriter) -> None:
        length = [f"Content-Length: {len(body)}"] if declare_length else []
        writer.write(head(*headers, *length))
        await send_body(htx, writer, body)

    return answer


def drip(interval_s: float, *, in_headers: bool = False) -> Answer:
    """A valid-looking answer sent one byte per interval_s, forever: each read succeeds before any per-read
    timeout, so only a total deadline ends it."""

    body = b'{"code":200,"data":1' + b" " * 50_000 + b"}"  # within every cap

    async def answer(htx: HostileHtx, writer: asyncio.StreamWriter) -> None:
        opening = head(f"Content-Length: {len(body)}")
        if not in_headers:
            writer.write(opening)
        stream = (opening if in_headers else b"") + body
        for byte in stream:
            writer.write(bytes([byte]))
            await writer.drain()
            htx.body_bytes_sent += 1
            await asyncio.sleep(interval_s)

    return answer


def gzip_bomb(decompressed_bytes: int) -> bytes:
    """A gzip body of zeros, about a thousandth of its decompressed size on the wire (built without holding
    the zeros)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * CHUNK
    return b"".join(compressor.compress(zeros) for _ in range(decompressed_bytes // CHUNK)) + compressor.flush()
