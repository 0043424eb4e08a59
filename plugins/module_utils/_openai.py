# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one HTTP/SSE client for vLLM's OpenAI- and Anthropic-compatible API (``vllm_verify``, ``vllm_bench``).

Written by hand on asyncio streams, which STYLE.md asks us to justify: this code runs on the managed nodes with their
stock Python (3.8+), where neither aiohttp nor httpx can be assumed, and the standard library's ``http.client`` blocks,
so a benchmark holding 256 streams open would need 256 threads and the GIL would blur every timestamp. One event loop
on one core keeps 256+ streams and their per-event timestamps; ``vllm_verify`` uses the same code through the blocking
facade :class:`Client`.

What it speaks: HTTP/1.1 with keep-alive (a pool of idle connections per client), ``Content-Length``, chunked and
close-delimited bodies, https through :mod:`ssl`; Server-Sent Events (``data:``, ``event:``, comments, CRLF or LF).
What it does not: proxies (``*_proxy`` variables are ignored, the nodes talk to their own server), HTTP/2,
redirects, compression (it never asks for any), cookies.

Streaming API, for the benchmark:

- :meth:`AsyncClient.stream_reads` yields ``(t, events)`` once per socket read: ``t`` is ``time.perf_counter()``
  taken as the read returned, ``events`` the complete SSE events that read finished, each ``(event_name, data)`` as
  bytes (``event_name`` is ``b""`` when the server sent none). The low-overhead form: one yield per read however many
  events it carried, and no JSON decoding.
- :meth:`AsyncClient.stream_events` yields ``(t, data)`` per event, built on the above.
- Nothing is parsed byte by byte: bodies are split with ``bytes.find``/``bytes.split`` on ``\\r\\n`` and ``\\n\\n``.
- Timeouts cost one timer per request, not a task per read (``asyncio.wait_for`` before Python 3.12 wraps every
  awaited read in a task): a watchdog aborts the connection once no byte has arrived for ``timeout`` seconds.
- The request is written when iteration starts; take your start timestamp just before the first ``__anext__``.

Errors are typed (:class:`ConnectError`, :class:`RequestTimeoutError`, :class:`HTTPStatusError`,
:class:`ProtocolError`, all :class:`ClientError`; :class:`ConnectTimeoutError` is both of the first two) and their
messages name the method and URL. The API key is sent only as ``Authorization: Bearer`` and is scrubbed from every
message this module builds; request headers are never echoed.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from urllib.parse import urlsplit

READ_SIZE = 65536
MAX_HEAD_BYTES = 65536
MAX_BODY_BYTES = 64 * 1024 * 1024
# An error body is quoted in messages up to this many characters.
SNIPPET_CHARS = 300
USER_AGENT = "kimi.vllm"
REDACTED = "********"


# The options of every module that talks to the server; documented by the kimi.vllm.server doc fragment.
SERVER_ARGUMENT_SPEC = {
    "url": {"type": "str", "default": "http://127.0.0.1:8000"},
    "api_key": {"type": "str", "no_log": True},
    "validate_certs": {"type": "bool", "default": True},
}


class ClientError(Exception):
    """Anything that kept a request from producing a usable answer."""

    def __init__(self, message: str, url: str = "") -> None:
        """Keep the message (which already names the URL) and the URL."""
        super().__init__(message)
        self.url = url


class ConnectError(ClientError):
    """No connection: refused, unknown host, unreachable, TLS handshake or certificate failure."""


class RequestTimeoutError(ClientError):
    """No connection, or no further byte of the answer, within the timeout."""


class ConnectTimeoutError(RequestTimeoutError, ConnectError):
    """No connection within the timeout (a firewall that drops packets, a host that is down)."""


class HTTPStatusError(ClientError):
    """The server answered with a status of 400 or more (or an unexpected one for a stream)."""

    def __init__(self, message: str, url: str, status: int, reason: str, body: bytes, headers: dict) -> None:
        """Keep the status, reason, body and lower-cased headers."""
        super().__init__(message, url)
        self.status = status
        self.reason = reason
        self.body = body
        self.headers = headers

    def error_message(self) -> str:
        """The server's own error text, from the JSON shapes vLLM and FastAPI use, or the start of the body."""
        return error_text(self.body)


class ProtocolError(ClientError):
    """The answer broke HTTP or SSE framing: a connection cut mid-body, a bad chunk, malformed JSON."""


def error_text(body: bytes) -> str:
    """The error message inside an error body.

    Shapes: OpenAI / vLLM >= 0.10.2 ``{"error": {"message"}}``; vLLM before that ``{"message"}``;
    Anthropic ``{"type": "error", "error": {"message"}}``; FastAPI ``{"detail": ...}``; vLLM's auth middleware
    ``{"error": "Unauthorized"}``. Anything else: the start of the body as text.
    """
    text = body.decode("utf-8", errors="replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return snippet(text)
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict) and err.get("message"):
            return snippet(str(err["message"]))
        if isinstance(err, str) and err:
            return snippet(err)
        for key in ("message", "detail"):
            if doc.get(key):
                return snippet(doc[key] if isinstance(doc[key], str) else json.dumps(doc[key]))
    return snippet(text)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class Response:
    """A complete answer: ``status``, ``reason``, lower-cased ``headers``, ``body`` bytes, timing."""

    def __init__(self, method, url, status, reason, headers, body, t_start, t_end, redact):
        """Keep what was received; ``redact`` scrubs secrets from messages built later."""
        self.method = method
        self.url = url
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.t_start = t_start
        self.t_end = t_end
        self._redact = redact

    @property
    def elapsed(self) -> float:
        """Seconds from writing the request to the last byte of the answer."""
        return self.t_end - self.t_start

    def text(self) -> str:
        """The body as text (UTF-8, errors replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        """The body parsed as JSON; :class:`ProtocolError` naming the URL when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError as exc:
            msg = f"{self.method} {self.url}: HTTP {self.status} answer is not JSON ({exc}): {snippet(self.text())!r}"
            raise ProtocolError(self._redact(msg), self.url) from None

    def raise_for_status(self) -> Response:
        """Raise :class:`HTTPStatusError` for a status of 400 or more; return self otherwise."""
        if self.status >= 400:
            raise status_error(self.method, self.url, self.status, self.reason, self.body, self.headers, self._redact)
        return self


def status_error(method, url, status, reason, body, headers, redact) -> HTTPStatusError:
    """An :class:`HTTPStatusError` whose message quotes the server's error text."""
    detail = error_text(body)
    msg = f"{method} {url}: HTTP {status} {reason}".rstrip() + (f": {detail}" if detail else "")
    return HTTPStatusError(redact(msg), url, status, reason, body, headers)


# ---- body framing ----------------------------------------------------------------------------------------------


class ChunkedDecoder:
    """Incremental decoder of ``Transfer-Encoding: chunked`` (RFC 9112, section 7.1).

    :meth:`feed` takes bytes as they arrive and returns the payload they complete. ``done`` turns true after the
    last chunk and its trailers; bytes after that are kept in ``extra`` (a well-behaved server sends none).
    """

    __slots__ = ("_buf", "_crlf", "_remaining", "_trailers", "done", "extra")

    def __init__(self) -> None:
        """Start before the first chunk-size line."""
        self._buf = b""
        self._remaining = 0  # payload bytes left in the current chunk
        self._crlf = 0  # bytes of the CRLF after a chunk's payload still to skip
        self._trailers = False
        self.done = False
        self.extra = b""

    def feed(self, data: bytes) -> bytes:
        """Decode what ``data`` completes; :class:`ValueError` on bad framing."""
        buf = self._buf + data if self._buf else data
        out = []
        pos = 0
        end_of_data = len(buf)
        while pos < end_of_data and not self.done:
            if self._remaining:
                take = min(self._remaining, end_of_data - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._crlf = 2
                continue
            if self._crlf:
                take = min(self._crlf, end_of_data - pos)
                expected = b"\r\n"[2 - self._crlf : 2 - self._crlf + take]
                if buf[pos : pos + take] != expected:
                    raise ValueError("chunk payload not followed by CRLF")
                pos += take
                self._crlf -= take
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if end_of_data - pos > 4096:
                    raise ValueError("chunk-size line longer than 4096 bytes")
                break
            line = buf[pos:eol]
            pos = eol + 2
            if self._trailers:
                if not line:
                    self.done = True
                continue
            size_field = line.split(b";", 1)[0].strip()
            if not size_field or size_field.strip(b"0123456789abcdefABCDEF"):
                raise ValueError(f"bad chunk-size line {snippet(line.decode('latin-1'), 40)!r}")
            size = int(size_field, 16)
            if size:
                self._remaining = size
            else:
                self._trailers = True
        if self.done:
            self.extra = buf[pos:]
            self._buf = b""
        else:
            self._buf = buf[pos:]
        return b"".join(out) if len(out) != 1 else out[0]


class LengthDecoder:
    """A body of ``Content-Length`` bytes."""

    __slots__ = ("_remaining", "done", "extra")

    def __init__(self, length: int) -> None:
        """Expect ``length`` bytes."""
        self._remaining = length
        self.done = length == 0
        self.extra = b""

    def feed(self, data: bytes) -> bytes:
        """Return the part of ``data`` that belongs to the body."""
        if len(data) < self._remaining:
            self._remaining -= len(data)
            return data
        body, self.extra = data[: self._remaining], data[self._remaining :]
        self._remaining = 0
        self.done = True
        return body


class CloseDecoder:
    """A body that ends when the server closes the connection (no length, not chunked)."""

    __slots__ = ("done", "extra")

    def __init__(self) -> None:
        """Never done until EOF."""
        self.done = False
        self.extra = b""

    def feed(self, data: bytes) -> bytes:
        """All of it is body."""
        return data


class SSEParser:
    """Incremental Server-Sent Events parser (the WHATWG ``text/event-stream`` format).

    :meth:`feed` returns the events a piece of the body completes, each ``(event_name, data)`` as bytes; multi-line
    data is joined with ``\\n``; comments, ``id:`` and ``retry:`` are dropped. A block of only ``data: ...`` on one
    line (every vLLM chunk) takes a fast path without a per-line loop. Call :meth:`close` at the end of the body.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        """No pending bytes."""
        self._buf = b""

    def feed(self, data: bytes) -> list:
        """The complete events in ``data`` (and what was pending)."""
        buf = self._buf + data if self._buf else data
        tail = b""
        if b"\r" in buf:
            if buf.endswith(b"\r"):  # may be half of a CRLF whose LF is in the next read
                buf, tail = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop() + tail
        events = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                events.append((b"", block[6:]))
            elif block:
                event = _parse_block(block)
                if event is not None:
                    events.append(event)
        return events

    def close(self) -> list:
        """At the end of the body: the events a held-back CR completes (servers that end lines with a bare CR);
        :class:`ValueError` when the body ended in the middle of an event."""
        events = []
        if self._buf.endswith(b"\r"):
            self._buf = self._buf[:-1]
            events = self.feed(b"\n")
        pending = self._buf.strip(b"\r\n")
        if pending:
            raise ValueError(f"the stream ended inside an event: {snippet(pending.decode('utf-8', 'replace'), 80)!r}")
        return events


def _parse_block(block: bytes):
    """One SSE event block in full generality; None when it holds no data (only comments or fields)."""
    name = b""
    data = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
    if not data:
        return None
    return name, b"\n".join(data)


# ---- connections -----------------------------------------------------------------------------------------------


class _Connection:
    """One keep-alive connection and the watchdog that enforces the idle timeout."""

    __slots__ = ("_loop", "_watch", "last_activity", "reader", "reused", "timed_out", "timeout", "writer")

    def __init__(self, reader, writer) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False
        self.timed_out = False
        self.last_activity = time.perf_counter()
        self._watch = None
        self._loop = None
        self.timeout = 0.0

    def arm(self, timeout: float) -> None:
        """Abort the connection once no byte has arrived for ``timeout`` seconds."""
        self.last_activity = time.perf_counter()
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._watch = self._loop.call_later(timeout, self._check)

    def disarm(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _check(self) -> None:
        idle = time.perf_counter() - self.last_activity
        if idle >= self.timeout * 0.999:
            self._watch = None
            self.timed_out = True
            self.writer.transport.abort()  # the pending read returns b"" (EOF); the caller sees timed_out
        else:
            self._watch = self._loop.call_later(self.timeout - idle, self._check)

    def usable(self) -> bool:
        return not self.writer.transport.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.disarm()
        self.writer.transport.abort()


class _Head:
    __slots__ = ("headers", "reason", "rest", "status")

    def __init__(self, status, reason, headers, rest):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.rest = rest


def parse_head(raw: bytes):
    """Status, reason and lower-cased headers (repeated ones joined with ``, ``) of a response head."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ValueError(f"not an HTTP/1.x status line: {snippet(lines[0], 80)!r}")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {snippet(line, 80)!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def _decoder_for(method: str, status: int, headers: dict):
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return LengthDecoder(0)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return ChunkedDecoder()
    if "content-length" in headers:
        try:
            length = int(headers["content-length"].split(",")[0])
        except ValueError:
            raise ValueError(f"bad Content-Length {headers['content-length']!r}") from None
        if length < 0:
            raise ValueError(f"bad Content-Length {length}")
        return LengthDecoder(length)
    return CloseDecoder()


def _keeps_alive(headers: dict, decoder) -> bool:
    return "close" not in headers.get("connection", "").lower() and not isinstance(decoder, CloseDecoder)


class AsyncClient:
    """HTTP/1.1 client for one server, with a pool of keep-alive connections. Use it from one event loop.

    ``base_url`` is ``http[s]://host[:port][/prefix]``; request paths are appended to the prefix. ``timeout`` bounds
    the connection and every wait for the next bytes of an answer (so, for a non-streamed completion, the whole
    generation). ``api_key`` is sent as ``Authorization: Bearer`` unless a call passes ``auth=False``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        validate_certs: bool = True,
        headers: dict | None = None,
        max_idle: int = 1024,
    ) -> None:
        """Check ``base_url`` (:class:`ValueError` when it is not an http(s) URL) and keep the settings."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http://host[:port] or https://host[:port], got {base_url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("url must not carry credentials; pass the API key separately")
        if parts.query or parts.fragment:
            raise ValueError(f"url must not have a query or fragment, got {base_url!r}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"url has a bad port: {base_url!r}") from None
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        host_for_header = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if parts.scheme == "https" else 80
        self.host_header = host_for_header if self.port == default_port else f"{host_for_header}:{self.port}"
        self.base_url = f"{self.scheme}://{self.host_header}{self.prefix}"
        self.timeout = float(timeout)
        self._api_key = api_key or None
        self._ssl = None
        if self.scheme == "https":
            self._ssl = ssl.create_default_context()
            if not validate_certs:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._extra_headers = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._idle = []
        self._max_idle = max_idle

    # -- helpers ---------------------------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced."""
        if self._api_key and self._api_key in text:
            return text.replace(self._api_key, REDACTED)
        return text

    def url(self, path: str) -> str:
        """The full URL of ``path``."""
        return self.base_url + path

    def _head_bytes(self, method, path, body, headers, auth, accept) -> bytes:
        head = (
            f"{method} {self.prefix}{path} HTTP/1.1\r\nHost: {self.host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
            f"Accept: {accept}\r\nAccept-Encoding: identity\r\n{self._extra_headers}"
        )
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        if auth and self._api_key:
            head += f"Authorization: Bearer {self._api_key}\r\n"
        if headers:
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return (head + "\r\n").encode("utf-8")

    async def _connect(self, method: str, url: str, timeout: float, fresh: bool = False) -> _Connection:
        while self._idle and not fresh:
            conn = self._idle.pop()
            if conn.usable():
                conn.reused = True
                return conn
            conn.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                    limit=READ_SIZE,
                ),
                timeout,
            )
        except asyncio.TimeoutError:
            raise ConnectTimeoutError(f"{method} {url}: no connection within {timeout:g} s", url) from None
        except ssl.SSLError as exc:
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                hint = " (validate_certs=false accepts it)"
            elif "WRONG_VERSION_NUMBER" in str(exc):
                hint = " (the server does not speak TLS here: use http://)"
            raise ConnectError(self.redact(f"{method} {url}: TLS failed: {exc}{hint}"), url) from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectError(f"{method} {url}: cannot connect: {reason}", url) from None
        return _Connection(reader, writer)

    def _release(self, conn: _Connection, reusable: bool) -> None:
        conn.disarm()
        if reusable and not conn.timed_out and len(self._idle) < self._max_idle and conn.usable():
            self._idle.append(conn)
        else:
            conn.close()

    async def _read(self, conn: _Connection) -> bytes:
        try:
            data = await conn.reader.read(READ_SIZE)
        except (OSError, ssl.SSLError) as exc:
            if conn.timed_out:
                return b""
            raise _Cut(exc.strerror or str(exc) or type(exc).__name__) from None
        conn.last_activity = time.perf_counter()
        return data

    async def _send_and_read_head(self, conn, method, url, head_bytes, body, timeout):
        """Write the request, read the response head. ``_Stale`` when a reused connection had been closed."""
        conn.arm(timeout)
        try:
            conn.writer.write(head_bytes + body if body else head_bytes)
        except (OSError, RuntimeError) as exc:
            if conn.reused:
                raise _Stale() from None
            raise ProtocolError(f"{method} {url}: cannot send the request: {exc}", url) from None
        buf = b""
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                try:
                    status, reason, headers = parse_head(buf[:end])
                except ValueError as exc:
                    raise ProtocolError(self.redact(f"{method} {url}: bad response head: {exc}"), url) from None
                buf = buf[end + 4 :]
                if 100 <= status < 200 and status != 101:  # 100 Continue and friends: the real head follows
                    continue
                return _Head(status, reason, headers, buf)
            if len(buf) > MAX_HEAD_BYTES:
                raise ProtocolError(f"{method} {url}: response head longer than {MAX_HEAD_BYTES} bytes", url)
            try:
                data = await self._read(conn)
            except _Cut as cut:
                if conn.reused and not buf:
                    raise _Stale() from None
                raise ProtocolError(f"{method} {url}: connection failed before the answer: {cut}", url) from None
            if not data:
                if conn.timed_out:
                    raise RequestTimeoutError(f"{method} {url}: no answer within {timeout:g} s", url)
                if conn.reused and not buf:
                    raise _Stale()
                what = "closed the connection without answering" if not buf else "closed the connection mid-head"
                raise ProtocolError(f"{method} {url}: the server {what}", url)
            buf += data

    async def _open(self, method, path, body, headers, auth, timeout, accept):
        """Connect (reusing an idle connection when there is one), send, and return ``(conn, head, url)``."""
        url = self.url(path)
        head_bytes = self._head_bytes(method, path, body, headers, auth, accept)
        for attempt in range(2):
            conn = await self._connect(method, url, timeout, fresh=attempt > 0)
            try:
                head = await self._send_and_read_head(conn, method, url, head_bytes, body, timeout)
            except _Stale:
                conn.close()
                continue  # the server had closed the idle connection: once more on a fresh one
            except BaseException:
                conn.close()
                raise
            return conn, head, url
        raise ProtocolError(f"{method} {url}: the server closed two connections without answering", url)

    async def _read_body(self, conn, method, url, decoder, first: bytes, limit: int = MAX_BODY_BYTES) -> bytes:
        parts = [decoder.feed(first)] if first else []
        size = len(parts[0]) if parts else 0
        while not decoder.done:
            try:
                data = await self._read(conn)
            except _Cut as cut:
                raise ProtocolError(f"{method} {url}: connection failed after {size} body bytes: {cut}", url) from None
            if not data:
                if conn.timed_out:
                    raise RequestTimeoutError(
                        f"{method} {url}: the answer stopped for {conn.timeout:g} s after {size} body bytes", url
                    )
                if isinstance(decoder, CloseDecoder):
                    break
                raise ProtocolError(f"{method} {url}: connection closed after {size} body bytes, mid-body", url)
            piece = decoder.feed(data)
            size += len(piece)
            if size > limit:
                raise ProtocolError(f"{method} {url}: answer larger than {limit} bytes", url)
            parts.append(piece)
        return b"".join(parts)

    # -- requests ----------------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body=None,
        content: bytes | None = None,
        headers: dict | None = None,
        auth: bool = True,
        timeout: float | None = None,
    ) -> Response:
        """Send one request and read the whole answer, whatever its status (see :meth:`Response.raise_for_status`).

        ``json_body`` is serialised compactly; ``content`` is sent as is (already JSON, prepared once).
        """
        timeout = self.timeout if timeout is None else timeout
        body = content if content is not None else _dump(json_body) if json_body is not None else None
        t_start = time.perf_counter()
        conn, head, url = await self._open(method, path, body, headers, auth, timeout, "application/json")
        reusable = False
        try:
            try:
                decoder = _decoder_for(method, head.status, head.headers)
            except ValueError as exc:
                raise ProtocolError(f"{method} {url}: {exc}", url) from None
            try:
                payload = await self._read_body(conn, method, url, decoder, head.rest)
            except ValueError as exc:
                raise ProtocolError(self.redact(f"{method} {url}: bad chunked body: {exc}"), url) from None
            reusable = _keeps_alive(head.headers, decoder) and not decoder.extra
        finally:
            self._release(conn, reusable)
        return Response(
            method, url, head.status, head.reason, head.headers, payload, t_start, time.perf_counter(), self.redact
        )

    async def stream_reads(
        self,
        path: str,
        json_body=None,
        *,
        content: bytes | None = None,
        method: str = "POST",
        headers: dict | None = None,
        auth: bool = True,
        timeout: float | None = None,
    ):
        """Send a request whose answer is an SSE stream; yield ``(t, events)`` once per socket read.

        ``t`` is ``time.perf_counter()`` as the read returned; ``events`` lists the ``(event_name, data)`` pairs that
        read completed (possibly none, when a read ends mid-event). Raises :class:`HTTPStatusError` when the status
        is not 200 (with the error body), :class:`ProtocolError` when the answer is not ``text/event-stream``, when
        the connection is cut mid-stream or when the stream ends inside an event, :class:`RequestTimeoutError` when
        no byte arrives for ``timeout`` seconds. A consumer that stops early closes the connection.
        """
        timeout = self.timeout if timeout is None else timeout
        body = content if content is not None else _dump(json_body) if json_body is not None else None
        conn, head, url = await self._open(method, path, body, headers, auth, timeout, "text/event-stream")
        reusable = False
        try:
            try:
                decoder = _decoder_for(method, head.status, head.headers)
            except ValueError as exc:
                raise ProtocolError(f"{method} {url}: {exc}", url) from None
            ctype = head.headers.get("content-type", "")
            if head.status != 200 or not ctype.startswith("text/event-stream"):
                try:
                    err_body = await self._read_body(conn, method, url, decoder, head.rest, limit=1024 * 1024)
                except ValueError:
                    err_body = b""
                if head.status != 200:
                    raise status_error(method, url, head.status, head.reason, err_body, head.headers, self.redact)
                msg = (
                    f"{method} {url}: expected an event stream (text/event-stream), got {ctype or 'no content type'}: "
                    f"{snippet(err_body.decode('utf-8', 'replace'))!r}"
                )
                raise ProtocolError(self.redact(msg), url)
            parser = SSEParser()
            received = 0
            t = conn.last_activity
            data = head.rest
            while True:
                if data:
                    received += len(data)
                    try:
                        events = parser.feed(decoder.feed(data))
                    except ValueError as exc:
                        msg = f"{method} {url}: bad chunked body after {received} bytes: {exc}"
                        raise ProtocolError(self.redact(msg), url) from None
                    yield t, events
                if decoder.done:
                    break
                try:
                    data = await self._read(conn)
                except _Cut as cut:
                    raise ProtocolError(f"{method} {url}: stream cut after {received} bytes: {cut}", url) from None
                t = conn.last_activity
                if not data:
                    if conn.timed_out:
                        raise RequestTimeoutError(
                            f"{method} {url}: the stream stopped for {timeout:g} s after {received} bytes", url
                        )
                    if isinstance(decoder, CloseDecoder):
                        break
                    raise ProtocolError(
                        f"{method} {url}: the server closed the stream after {received} bytes, mid-body", url
                    )
            try:
                events = parser.close()
            except ValueError as exc:
                raise ProtocolError(self.redact(f"{method} {url}: {exc}"), url) from None
            if events:
                yield t, events
            reusable = _keeps_alive(head.headers, decoder) and not decoder.extra
        finally:
            self._release(conn, reusable)

    async def stream_events(self, path: str, json_body=None, **kwargs):
        """Like :meth:`stream_reads`, one ``(t, data)`` per event (events of one read share ``t``)."""
        async for t, events in self.stream_reads(path, json_body, **kwargs):
            for _name, data in events:
                yield t, data

    # -- low-overhead streaming (added for vllm_bench) -----------------------------------------------------------
    # Why (docs/benchmarks.md): stream_reads costs a future, a task step and an async-generator hop per socket
    # read, which at hundreds of streams of one token per chunk is the whole cost of a benchmark client.
    # stream_callback hands each read straight from the event loop's reader callback to ``on_read``, and on plain
    # TCP (Linux) stamps it with the kernel's receive time (SO_TIMESTAMPNS), so that the client's own parsing and a
    # late wake-up move no timestamp. It does not make batching harmless: segments that wait in the socket are
    # merged by the kernel under the newest one's time, so the loop must read each socket as soon as it is readable
    # (a 5 ms poll pace once put every token of a batch at the last one's time). vllm_verify does not use it.

    async def stream_callback(
        self,
        path: str,
        on_read,
        *,
        content: bytes,
        method: str = "POST",
        headers: dict | None = None,
        auth: bool = True,
        timeout: float | None = None,
        kernel_timestamps: bool = True,
    ) -> bool:
        """Send a request whose answer is an SSE stream; call ``on_read(t, events)`` once per socket read.

        ``t`` and ``events`` are as in :meth:`stream_reads`, except that ``t`` is the kernel's receive time of the
        read's last packet (the only time the kernel keeps for segments it merged), on the ``perf_counter()`` scale,
        when ``kernel_timestamps`` and the connection allow it (plain http on Linux). Over https the reads come through
        :meth:`stream_reads` (TLS records cannot be read past the transport). The whole answer, head included, is read
        this way, so a first event that comes with the head is stamped alike. The request is written before the first
        suspension: take the start timestamp just before awaiting this. Errors as :meth:`stream_reads`; an exception
        raised by ``on_read`` ends the stream and is raised here. Returns whether kernel timestamps were used.
        """
        timeout = self.timeout if timeout is None else timeout
        if self._ssl is not None:  # TLS records cannot be read past the transport: the stream_reads path, per read
            kwargs = {"content": content, "method": method, "headers": headers, "auth": auth, "timeout": timeout}
            async for t, events in self.stream_reads(path, **kwargs):
                if events:
                    on_read(t, events)
            return False
        url = self.url(path)
        head_bytes = self._head_bytes(method, path, content, headers, auth, "text/event-stream")
        for attempt in range(2):
            conn = await self._connect(method, url, timeout, fresh=attempt > 0)
            pump = _Pump(conn, on_read, method, url, timeout, self.redact)
            try:
                conn.arm(timeout)
                try:
                    conn.writer.write(head_bytes + content)
                except (OSError, RuntimeError) as exc:
                    if conn.reused:
                        raise _Stale() from None
                    raise ProtocolError(f"{method} {url}: cannot send the request: {exc}", url) from None
                used_kernel = await pump.run(kernel_timestamps)
            except _Stale:
                conn.close()
                continue  # the server had closed the idle connection: once more on a fresh one
            except BaseException:
                self._release(conn, False)
                raise
            if pump.status != 200:
                error = status_error(
                    method, url, pump.status, pump.reason, pump.error_body(), pump.headers, self.redact
                )
                self._release(conn, False)
                raise error
            self._release(conn, pump.reusable)
            return used_kernel
        raise ProtocolError(f"{method} {url}: the server closed two connections without answering", url)

    async def aclose(self) -> None:
        """Close the idle connections."""
        while self._idle:
            self._idle.pop().close()


class _Stale(Exception):  # noqa: N818 - a signal between two methods, never raised to callers
    """A reused keep-alive connection turned out closed before any answer byte."""


class _Cut(Exception):  # noqa: N818 - carries the OS error text to the caller that names the URL
    """The connection failed while reading."""


# SO_TIMESTAMPNS and its control message (Linux; the socket module has no name for them).
_SO_TIMESTAMPNS = 35
_ANC_SIZE = 64


class _Pump:
    """Reads one answer (head and body) from the event loop's reader callback (see AsyncClient.stream_callback)."""

    def __init__(self, conn, on_read, method, url, timeout, redact) -> None:
        self.conn = conn
        self.on_read = on_read
        self.method = method
        self.url = url
        self.timeout = timeout
        self.redact = redact
        self.received = 0
        self.head_buf = b""
        self.status = None
        self.reason = ""
        self.headers = {}
        self.decoder = None
        self.parser = SSEParser()
        self.body_parts = []
        self.reusable = False

    def error_body(self) -> bytes:
        """The body of a non-200 answer (as much as was read)."""
        return b"".join(self.body_parts)

    def feed(self, t: float, data: bytes) -> bool:
        """Take ``data``; True when the answer is complete. Raises ClientError subclasses on bad answers."""
        self.received += len(data)
        if self.decoder is None:
            self.head_buf += data
            end = self.head_buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head_buf) > MAX_HEAD_BYTES:
                    msg = f"{self.method} {self.url}: response head longer than {MAX_HEAD_BYTES} bytes"
                    raise ProtocolError(msg, self.url)
                return False
            try:
                self.status, self.reason, self.headers = parse_head(self.head_buf[:end])
                data = self.head_buf[end + 4 :]
                if 100 <= self.status < 200 and self.status != 101:  # 100 Continue: the real head follows
                    self.head_buf, self.status = b"", None
                    return self.feed(t, data) if data else False
                self.decoder = _decoder_for(self.method, self.status, self.headers)
            except ValueError as exc:
                raise ProtocolError(
                    self.redact(f"{self.method} {self.url}: bad response head: {exc}"), self.url
                ) from None
            ctype = self.headers.get("content-type", "")
            if self.status == 200 and not ctype.startswith("text/event-stream"):
                msg = f"{self.method} {self.url}: expected an event stream (text/event-stream), got {ctype or 'none'}"
                raise ProtocolError(self.redact(msg), self.url)
            if not data:
                return self.decoder.done
        try:
            payload = self.decoder.feed(data)
            if self.status != 200:
                self.body_parts.append(payload)
                return self.decoder.done
            events = self.parser.feed(payload)
        except ValueError as exc:
            msg = f"{self.method} {self.url}: bad chunked body after {self.received} bytes: {exc}"
            raise ProtocolError(self.redact(msg), self.url) from None
        if events:
            self.on_read(t, events)
        if self.decoder.done:
            try:
                self.parser.close()
            except ValueError as exc:
                raise ProtocolError(self.redact(f"{self.method} {self.url}: {exc}"), self.url) from None
            self.reusable = _keeps_alive(self.headers, self.decoder) and not self.decoder.extra
            return True
        return False

    async def run(self, kernel_timestamps: bool) -> bool:
        """Read until the answer ends; True when the reads carried kernel timestamps. _Stale on a dead reused one."""
        import os
        import socket
        import struct

        loop = asyncio.get_running_loop()
        conn = self.conn
        transport = conn.writer.transport
        sock = transport.get_extra_info("socket")
        if sock is None:
            raise ProtocolError(f"{self.method} {self.url}: the connection has no socket", self.url)
        # A second descriptor of the same socket, read directly while the transport's own reading is paused. The
        # transport is paused before the loop can read any of the answer, so its stream reader holds none of it.
        transport.pause_reading()
        raw = socket.socket(fileno=os.dup(sock.fileno()))
        raw.setblocking(False)
        stamped = False
        if kernel_timestamps:
            try:
                raw.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                stamped = True
            except OSError:
                stamped = False
        done = loop.create_future()
        unpack = struct.Struct("qq").unpack_from
        perf = time.perf_counter
        wall = time.time

        def finish(error=None):
            if not done.done():
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

        def readable():
            try:
                data, anc, _flags, _addr = raw.recvmsg(READ_SIZE, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if conn.reused and not self.received:
                    finish(_Stale())
                else:
                    cut = f"{self.method} {self.url}: connection failed after {self.received} bytes: {exc}"
                    finish(ProtocolError(cut, self.url))
                return
            now = perf()
            conn.last_activity = now
            if not data:
                if conn.reused and not self.received:
                    finish(_Stale())
                elif self.decoder is not None and isinstance(self.decoder, CloseDecoder):
                    finish()
                else:
                    where = "before the answer" if self.decoder is None else "mid-body"
                    msg = f"{self.method} {self.url}: the server closed the connection ({self.received} bytes, {where})"
                    finish(ProtocolError(msg, self.url))
                return
            t = now
            if anc:
                sec, nsec = unpack(anc[0][2])
                t = now - (wall() - (sec + nsec * 1e-9))
            try:
                if self.feed(t, data):
                    finish()
            except BaseException as exc:
                finish(exc)

        timer = []

        def idle_check():
            if done.done():
                return
            idle = perf() - conn.last_activity
            if idle >= self.timeout:
                msg = f"{self.method} {self.url}: no byte for {self.timeout:g} s after {self.received} bytes"
                finish(RequestTimeoutError(msg, self.url))
            else:
                timer[0] = loop.call_later(self.timeout - idle, idle_check)

        loop.add_reader(raw.fileno(), readable)
        timer.append(loop.call_later(self.timeout, idle_check))
        try:
            await done
        finally:
            timer[0].cancel()
            loop.remove_reader(raw.fileno())
            raw.close()
            if not transport.is_closing():
                transport.resume_reading()
        return stamped


def _dump(doc) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ---- blocking facade -------------------------------------------------------------------------------------------


class StreamResult:
    """A stream read to its end: ``events`` is a list of ``(t, event_name, data)`` with names decoded to str."""

    def __init__(self, url, t_start, events, t_end):
        """Keep the events and timing."""
        self.url = url
        self.t_start = t_start
        self.events = events
        self.t_end = t_end

    @property
    def elapsed(self) -> float:
        """Seconds from writing the request to the end of the stream."""
        return self.t_end - self.t_start


class Client:
    """Blocking facade over :class:`AsyncClient` on a private event loop, for probes made one at a time."""

    def __init__(self, base_url: str, **kwargs) -> None:
        """Same arguments as :class:`AsyncClient`."""
        self.aio = AsyncClient(base_url, **kwargs)
        self._loop = asyncio.new_event_loop()

    def __enter__(self) -> Client:
        """Use as a context manager."""
        return self

    def __exit__(self, *exc_info) -> None:
        """Close on leaving the block."""
        self.close()

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced."""
        return self.aio.redact(text)

    def url(self, path: str) -> str:
        """The full URL of ``path``."""
        return self.aio.url(path)

    def request(self, method: str, path: str, **kwargs) -> Response:
        """:meth:`AsyncClient.request`, blocking."""
        return self._loop.run_until_complete(self.aio.request(method, path, **kwargs))

    def get(self, path: str, **kwargs) -> Response:
        """GET ``path``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body, **kwargs) -> Response:
        """POST ``json_body`` to ``path``."""
        return self.request("POST", path, json_body=json_body, **kwargs)

    def stream(self, path: str, json_body=None, **kwargs) -> StreamResult:
        """Read a whole SSE stream; errors as :meth:`AsyncClient.stream_reads`, with the count of events before."""
        return self._loop.run_until_complete(self._collect(path, json_body, kwargs))

    async def _collect(self, path, json_body, kwargs) -> StreamResult:
        events = []
        t_start = time.perf_counter()
        try:
            async for t, batch in self.aio.stream_reads(path, json_body, **kwargs):
                events.extend((t, name.decode("utf-8", "replace"), data) for name, data in batch)
        except ClientError as exc:
            if events and isinstance(exc, (ProtocolError, RequestTimeoutError)):
                exc.args = (f"{exc.args[0]} ({len(events)} events received before)",)
            raise
        return StreamResult(self.url(path), t_start, events, time.perf_counter())

    def close(self) -> None:
        """Close the connections and the private loop."""
        if not self._loop.is_closed():
            self._loop.run_until_complete(self.aio.aclose())
            self._loop.close()
