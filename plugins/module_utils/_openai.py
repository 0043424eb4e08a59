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
  awaited read in a task): a watchdog aborts the connection once no byte has arrived for ``timeout`` seconds, or
  once the request's total ``deadline`` (when one is given) has passed. The idle timeout alone does not bound a
  request: a server that sends a byte now and then restarts it with every byte.
- What a server sends is bounded: a response head at :data:`MAX_HEAD_BYTES`, a plain body at :data:`MAX_BODY_BYTES`,
  one SSE event at :data:`MAX_EVENT_BYTES`; of an error body only the first :data:`MAX_ERROR_BODY_BYTES` are kept.
- The request is written when iteration starts; take your start timestamp just before the first ``__anext__``.

Errors are typed (:class:`ConnectError`, :class:`RequestTimeoutError`, :class:`HTTPStatusError`,
:class:`ProtocolError`, all :class:`ClientError`; :class:`ConnectTimeoutError` is both of the first two,
:class:`RequestDeadlineError` a :class:`RequestTimeoutError`) and their messages name the method and URL. The API key
is sent only as ``Authorization: Bearer`` and is scrubbed from every message this module builds, server text
included (a server may echo the key back); request headers are never echoed.
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
# One SSE event (vLLM's largest are a few KiB: a final chunk with usage, or one with logprobs).
MAX_EVENT_BYTES = 8 * 1024 * 1024
# Of an error body, this much is kept (and quoted from); the rest is not read.
MAX_ERROR_BODY_BYTES = 64 * 1024
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


class RequestDeadlineError(RequestTimeoutError):
    """The request's total deadline passed, connect included, however steadily bytes were arriving.

    Not a :class:`ConnectError` even when it passed while connecting: the deadline cut the wait short, so it says
    nothing about whether the server can be reached.
    """


class HTTPStatusError(ClientError):
    """The server answered with a status of 400 or more (or an unexpected one for a stream)."""

    def __init__(
        self, message: str, url: str, status: int, reason: str, body: bytes, headers: dict, redact=None
    ) -> None:
        """Keep the status, reason, body and lower-cased headers; ``redact`` scrubs :meth:`error_message`."""
        super().__init__(message, url)
        self.status = status
        self.reason = reason
        self.body = body
        self.headers = headers
        self._redact = redact

    def error_message(self) -> str:
        """The server's own error text, from the JSON shapes vLLM and FastAPI use, or the start of the body."""
        text = error_text(self.body)
        return self._redact(text) if self._redact is not None else text


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
    return HTTPStatusError(redact(msg), url, status, reason, body, headers, redact)


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

    Linear in what it is fed: a read that completes its events (the usual case) is split where it lies, and the rest
    of an event waits in a bytearray that grows by appending, in which only the newly fed bytes are searched for the
    blank line that ends it. One event may be at most :data:`MAX_EVENT_BYTES`; beyond that :meth:`feed` raises
    :class:`ValueError` (a server that never sends a blank line would otherwise be held in memory whole).
    """

    __slots__ = ("_buf", "_cr")

    def __init__(self) -> None:
        """No pending bytes."""
        self._buf = bytearray()  # the start of an event: no blank line in it
        self._cr = False  # the last byte fed was a CR, which became an LF: an LF right after it completes a CRLF

    def feed(self, data: bytes) -> list:
        """The complete events in ``data`` (and what was pending)."""
        if not data:
            return []
        if self._cr or b"\r" in data:
            data = self._lf_only(data)
        buf = self._buf
        if buf and len(buf) < _SHORT_PENDING:  # cheaper joined than searched in place, and still bounded per read
            data = bytes(buf) + data
            buf.clear()
        if buf:
            start = len(buf) - 1  # a blank line can only begin at the pending part's last byte
            buf += data
            end = buf.rfind(b"\n\n", start)
            if end < 0:
                if len(buf) > MAX_EVENT_BYTES:
                    raise _event_too_big(len(buf))
                return []
            done = bytes(buf[:end])
            del buf[: end + 2]
            blocks = done.split(b"\n\n")
        else:
            blocks = data.split(b"\n\n")
            rest = blocks.pop()
            if rest:
                buf += rest
            done = data
        if len(buf) > MAX_EVENT_BYTES:
            raise _event_too_big(len(buf))
        if len(done) > MAX_EVENT_BYTES:  # one read of many events, or one event too big
            biggest = max(len(block) for block in blocks)
            if biggest > MAX_EVENT_BYTES:
                raise _event_too_big(biggest)
        events = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                events.append((b"", block[6:]))
            elif block:
                event = _parse_block(block)
                if event is not None:
                    events.append(event)
        return events

    def _lf_only(self, data: bytes) -> bytes:
        """``data`` with CRLF and CR line ends made LF, each where it lies (an LF that ends a CRLF split between
        two reads is dropped here, so nothing has to be held back)."""
        if self._cr and data.startswith(b"\n"):
            data = data[1:]
        self._cr = data.endswith(b"\r")
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def close(self) -> list:
        """At the end of the body: :class:`ValueError` when the body ended in the middle of an event; else no events
        (kept as a list for callers that add it to what :meth:`feed` returned)."""
        pending = self._buf.strip(b"\n")
        self._buf = bytearray()
        if pending:
            text = bytes(pending[:200]).decode("utf-8", "replace")
            raise ValueError(f"the stream ended inside an event: {snippet(text, 80)!r}")
        return []


# A pending start of an event shorter than this is joined to the next read (one small copy per read).
_SHORT_PENDING = 4096


def _event_too_big(size: int) -> ValueError:
    return ValueError(
        f"the server sent {size} bytes without an event separator (a blank line); "
        f"one event may be at most {MAX_EVENT_BYTES} bytes"
    )


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
    """One keep-alive connection and the watchdog that enforces the idle timeout and the total deadline."""

    __slots__ = (
        "_loop",
        "_watch",
        "deadline",
        "deadline_at",
        "deadline_passed",
        "last_activity",
        "reader",
        "received",
        "reused",
        "timed_out",
        "timeout",
        "writer",
    )

    def __init__(self, reader, writer) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False
        self.timed_out = False
        self.deadline_passed = False
        self.last_activity = time.perf_counter()
        self._watch = None
        self._loop = None
        self.timeout = 0.0
        self.deadline = None
        self.deadline_at = None
        self.received = 0  # bytes of the current answer, head included

    def arm(self, timeout: float, deadline=None, deadline_at=None) -> None:
        """Abort the connection once no byte has arrived for ``timeout`` seconds, or at ``deadline_at``
        (``perf_counter()`` time; ``deadline`` is the seconds it stands for, for messages)."""
        now = time.perf_counter()
        self.last_activity = now
        self.received = 0
        self.timeout = timeout
        self.deadline = deadline
        self.deadline_at = deadline_at
        self._loop = asyncio.get_running_loop()
        delay = timeout if deadline_at is None else min(timeout, deadline_at - now)
        self._watch = self._loop.call_later(delay, self._check)

    def disarm(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _check(self) -> None:
        now = time.perf_counter()
        idle = now - self.last_activity
        passed = self.deadline_at is not None and now >= self.deadline_at - 0.001
        if passed or idle >= self.timeout * 0.999:
            self._watch = None
            self.timed_out = True
            self.deadline_passed = passed
            self.writer.transport.abort()  # the pending read returns b"" (EOF); the caller sees timed_out
        else:
            delay = self.timeout - idle
            if self.deadline_at is not None:
                delay = min(delay, self.deadline_at - now)
            self._watch = self._loop.call_later(delay, self._check)

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
    generation). ``deadline`` (None: no limit) bounds each whole exchange, connect included, in seconds: a server
    that keeps sending a byte now and then never trips ``timeout`` but does trip it. Each request may pass its own
    ``timeout`` and ``deadline``; None takes these. ``api_key`` is sent as ``Authorization: Bearer`` unless a call
    passes ``auth=False``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        deadline: float | None = None,
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
        self.deadline = None if deadline is None else float(deadline)
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

    def _limits(self, timeout, deadline):
        """``(timeout, deadline, deadline_at)`` of a request starting now: the client's defaults where None."""
        timeout = self.timeout if timeout is None else timeout
        deadline = self.deadline if deadline is None else deadline
        return timeout, deadline, None if deadline is None else time.perf_counter() + deadline

    def _deadline_error(self, method, url, deadline, received, where="") -> RequestDeadlineError:
        shown = round(deadline, 2)  # a remaining time handed down (vllm_server_wait) has digits nobody needs
        msg = f"{method} {url}: the total deadline ({shown:g} s) passed {where or f'after {received} bytes'}"
        return RequestDeadlineError(self.redact(msg), url)

    def _timeout_error(self, conn, method, url, idle_message) -> RequestTimeoutError:
        """What a read that the watchdog cut short raises: the deadline's message, or ``idle_message``."""
        if conn.deadline_passed:
            return self._deadline_error(method, url, conn.deadline, conn.received)
        return RequestTimeoutError(self.redact(idle_message), url)

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

    async def _connect(self, method, url, timeout, fresh=False, deadline=None, deadline_at=None) -> _Connection:
        while self._idle and not fresh:
            conn = self._idle.pop()
            if conn.usable():
                conn.reused = True
                return conn
            conn.close()
        limit = timeout
        if deadline_at is not None:
            left = deadline_at - time.perf_counter()
            if left <= 0:
                raise self._deadline_error(method, url, deadline, 0, "before a connection was made")
            limit = min(limit, left)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                    limit=READ_SIZE,
                ),
                limit,
            )
        except asyncio.TimeoutError:
            if limit < timeout:
                raise self._deadline_error(method, url, deadline, 0, "before a connection was made") from None
            raise ConnectTimeoutError(self.redact(f"{method} {url}: no connection within {timeout:g} s"), url) from None
        except ssl.SSLError as exc:
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                hint = " (validate_certs=false accepts it)"
            elif "WRONG_VERSION_NUMBER" in str(exc):
                hint = " (the server does not speak TLS here: use http://)"
            raise ConnectError(self.redact(f"{method} {url}: TLS failed: {exc}{hint}"), url) from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectError(self.redact(f"{method} {url}: cannot connect: {reason}"), url) from None
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
        conn.received += len(data)
        return data

    async def _send_and_read_head(self, conn, method, url, head_bytes, body, limits):
        """Write the request, read the response head. ``_Stale`` when a reused connection had been closed."""
        timeout, deadline, deadline_at = limits
        conn.arm(timeout, deadline, deadline_at)
        try:
            conn.writer.write(head_bytes + body if body else head_bytes)
        except (OSError, RuntimeError) as exc:
            if conn.reused:
                raise _Stale() from None
            raise ProtocolError(self.redact(f"{method} {url}: cannot send the request: {exc}"), url) from None
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
                msg = f"{method} {url}: response head longer than {MAX_HEAD_BYTES} bytes"
                raise ProtocolError(self.redact(msg), url)
            try:
                data = await self._read(conn)
            except _Cut as cut:
                if conn.reused and not buf:
                    raise _Stale() from None
                msg = f"{method} {url}: connection failed before the answer: {cut}"
                raise ProtocolError(self.redact(msg), url) from None
            if not data:
                if conn.timed_out:
                    raise self._timeout_error(conn, method, url, f"{method} {url}: no answer within {timeout:g} s")
                if conn.reused and not buf:
                    raise _Stale()
                what = "closed the connection without answering" if not buf else "closed the connection mid-head"
                raise ProtocolError(self.redact(f"{method} {url}: the server {what}"), url)
            buf += data

    async def _open(self, method, path, body, headers, auth, limits, accept):
        """Connect (reusing an idle connection when there is one), send, and return ``(conn, head, url)``."""
        url = self.url(path)
        head_bytes = self._head_bytes(method, path, body, headers, auth, accept)
        for attempt in range(2):
            conn = await self._connect(method, url, limits[0], attempt > 0, limits[1], limits[2])
            try:
                head = await self._send_and_read_head(conn, method, url, head_bytes, body, limits)
            except _Stale:
                conn.close()
                continue  # the server had closed the idle connection: once more on a fresh one
            except BaseException:
                conn.close()
                raise
            return conn, head, url
        msg = f"{method} {url}: the server closed two connections without answering"
        raise ProtocolError(self.redact(msg), url)

    async def _read_body(self, conn, method, url, decoder, first: bytes) -> bytes:
        parts = [decoder.feed(first)] if first else []
        size = len(parts[0]) if parts else 0
        while not decoder.done:
            try:
                data = await self._read(conn)
            except _Cut as cut:
                msg = f"{method} {url}: connection failed after {size} body bytes: {cut}"
                raise ProtocolError(self.redact(msg), url) from None
            if not data:
                if conn.timed_out:
                    idle = f"{method} {url}: the answer stopped for {conn.timeout:g} s after {size} body bytes"
                    raise self._timeout_error(conn, method, url, idle)
                if isinstance(decoder, CloseDecoder):
                    break
                msg = f"{method} {url}: connection closed after {size} body bytes, mid-body"
                raise ProtocolError(self.redact(msg), url)
            piece = decoder.feed(data)
            size += len(piece)
            if size > MAX_BODY_BYTES:
                raise ProtocolError(self.redact(f"{method} {url}: answer larger than {MAX_BODY_BYTES} bytes"), url)
            parts.append(piece)
        return b"".join(parts)

    async def _read_error_body(self, conn, decoder, first: bytes) -> bytes:
        """The start of an answer that is quoted, not used: at most :data:`MAX_ERROR_BODY_BYTES`, enough to quote,
        and no more memory or waiting for a server that sends megabytes. The rest stays unread; the caller closes
        the connection. A body cut short (closed, timed out, bad framing) gives what came."""
        kept = bytearray()
        data = first
        try:
            while True:
                if data:
                    kept += decoder.feed(data)
                if decoder.done or len(kept) >= MAX_ERROR_BODY_BYTES:
                    break
                data = await self._read(conn)
                if not data:
                    break
        except (ValueError, _Cut):
            pass
        return bytes(kept[:MAX_ERROR_BODY_BYTES])

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
        deadline: float | None = None,
    ) -> Response:
        """Send one request and read the whole answer, whatever its status (see :meth:`Response.raise_for_status`).

        ``json_body`` is serialised compactly; ``content`` is sent as is (already JSON, prepared once).
        :class:`RequestDeadlineError` when the answer is not complete ``deadline`` seconds after the call.
        """
        limits = self._limits(timeout, deadline)
        body = content if content is not None else _dump(json_body) if json_body is not None else None
        t_start = time.perf_counter()
        conn, head, url = await self._open(method, path, body, headers, auth, limits, "application/json")
        reusable = False
        try:
            try:
                decoder = _decoder_for(method, head.status, head.headers)
            except ValueError as exc:
                raise ProtocolError(self.redact(f"{method} {url}: {exc}"), url) from None
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
        deadline: float | None = None,
    ):
        """Send a request whose answer is an SSE stream; yield ``(t, events)`` once per socket read.

        ``t`` is ``time.perf_counter()`` as the read returned; ``events`` lists the ``(event_name, data)`` pairs that
        read completed (possibly none, when a read ends mid-event). Raises :class:`HTTPStatusError` when the status
        is not 200 (with the start of the error body), :class:`ProtocolError` when the answer is not
        ``text/event-stream``, when the connection is cut mid-stream, when the stream ends inside an event or when
        one event passes :data:`MAX_EVENT_BYTES`, :class:`RequestTimeoutError` when no byte arrives for ``timeout``
        seconds, :class:`RequestDeadlineError` when the stream has not ended ``deadline`` seconds after the first
        ``__anext__`` (the consumer's time between reads counts). A consumer that stops early closes the connection.
        """
        limits = self._limits(timeout, deadline)
        timeout = limits[0]
        body = content if content is not None else _dump(json_body) if json_body is not None else None
        conn, head, url = await self._open(method, path, body, headers, auth, limits, "text/event-stream")
        reusable = False
        try:
            try:
                decoder = _decoder_for(method, head.status, head.headers)
            except ValueError as exc:
                raise ProtocolError(self.redact(f"{method} {url}: {exc}"), url) from None
            ctype = head.headers.get("content-type", "")
            if head.status != 200 or not ctype.startswith("text/event-stream"):
                err_body = await self._read_error_body(conn, decoder, head.rest)
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
                        payload = decoder.feed(data)
                    except ValueError as exc:
                        msg = f"{method} {url}: bad chunked body after {received} bytes: {exc}"
                        raise ProtocolError(self.redact(msg), url) from None
                    try:
                        events = parser.feed(payload)
                    except ValueError as exc:
                        raise ProtocolError(self.redact(f"{method} {url}: {exc}"), url) from None
                    yield t, events
                if decoder.done:
                    break
                try:
                    data = await self._read(conn)
                except _Cut as cut:
                    msg = f"{method} {url}: stream cut after {received} bytes: {cut}"
                    raise ProtocolError(self.redact(msg), url) from None
                t = conn.last_activity
                if not data:
                    if conn.timed_out:
                        idle = f"{method} {url}: the stream stopped for {timeout:g} s after {received} bytes"
                        raise self._timeout_error(conn, method, url, idle)
                    if isinstance(decoder, CloseDecoder):
                        break
                    msg = f"{method} {url}: the server closed the stream after {received} bytes, mid-body"
                    raise ProtocolError(self.redact(msg), url)
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
        deadline: float | None = None,
        kernel_timestamps: bool = True,
    ) -> bool:
        """Send a request whose answer is an SSE stream; call ``on_read(t, events)`` once per socket read.

        ``t`` and ``events`` are as in :meth:`stream_reads`, except that ``t`` is the kernel's receive time of the
        read's last packet (the only time the kernel keeps for segments it merged), on the ``perf_counter()`` scale,
        when ``kernel_timestamps`` and the connection allow it (plain http on Linux). Over https the reads come through
        :meth:`stream_reads` (TLS records cannot be read past the transport). The whole answer, head included, is read
        this way, so a first event that comes with the head is stamped alike. The request is written before the first
        suspension: take the start timestamp just before awaiting this. Errors as :meth:`stream_reads` (``deadline``
        counts from the call); an exception raised by ``on_read`` ends the stream and is raised here. Returns whether
        kernel timestamps were used.
        """
        if self._ssl is not None:  # TLS records cannot be read past the transport: the stream_reads path, per read
            kwargs = {"content": content, "method": method, "headers": headers, "auth": auth}
            async for t, events in self.stream_reads(path, timeout=timeout, deadline=deadline, **kwargs):
                if events:
                    on_read(t, events)
            return False
        timeout, deadline, deadline_at = self._limits(timeout, deadline)
        url = self.url(path)
        head_bytes = self._head_bytes(method, path, content, headers, auth, "text/event-stream")
        for attempt in range(2):
            conn = await self._connect(method, url, timeout, attempt > 0, deadline, deadline_at)
            pump = _Pump(conn, on_read, method, url, timeout, self)
            try:
                conn.arm(timeout, deadline, deadline_at)
                try:
                    conn.writer.write(head_bytes + content)
                except (OSError, RuntimeError) as exc:
                    if conn.reused:
                        raise _Stale() from None
                    msg = f"{method} {url}: cannot send the request: {exc}"
                    raise ProtocolError(self.redact(msg), url) from None
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
        msg = f"{method} {url}: the server closed two connections without answering"
        raise ProtocolError(self.redact(msg), url)

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

    def __init__(self, conn, on_read, method, url, timeout, client) -> None:
        """``conn`` is armed with the deadline (if any) before :meth:`run`; ``client`` builds the messages."""
        self.conn = conn
        self.on_read = on_read
        self.method = method
        self.url = url
        self.timeout = timeout
        self.client = client
        self.redact = client.redact
        self.received = 0
        self.head_buf = b""
        self.status = None
        self.reason = ""
        self.headers = {}
        self.decoder = None
        self.parser = SSEParser()
        self.body_parts = []
        self.error_size = 0
        self.reusable = False

    def error_body(self) -> bytes:
        """The start of a non-200 answer's body: what was read, at most MAX_ERROR_BODY_BYTES."""
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
                    raise ProtocolError(self.redact(msg), self.url)
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
        except ValueError as exc:
            if self.status != 200:  # quote what came
                return True
            msg = f"{self.method} {self.url}: bad chunked body after {self.received} bytes: {exc}"
            raise ProtocolError(self.redact(msg), self.url) from None
        if self.status != 200:
            # Kept to be quoted; beyond MAX_ERROR_BODY_BYTES the answer counts as complete and the connection,
            # with the rest unread, is closed (reusable stays False).
            payload = payload[: MAX_ERROR_BODY_BYTES - self.error_size]
            self.body_parts.append(payload)
            self.error_size += len(payload)
            return self.decoder.done or self.error_size >= MAX_ERROR_BODY_BYTES
        try:
            events = self.parser.feed(payload)
        except ValueError as exc:
            raise ProtocolError(self.redact(f"{self.method} {self.url}: {exc}"), self.url) from None
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
            raise ProtocolError(self.redact(f"{self.method} {self.url}: the connection has no socket"), self.url)
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
                    finish(ProtocolError(self.redact(cut), self.url))
                return
            now = perf()
            conn.last_activity = now
            if not data:
                if conn.reused and not self.received:
                    finish(_Stale())
                elif self.decoder is not None and (isinstance(self.decoder, CloseDecoder) or self.status != 200):
                    finish()  # the end of the body, or of an error body cut short: quote what came
                else:
                    where = "before the answer" if self.decoder is None else "mid-body"
                    msg = f"{self.method} {self.url}: the server closed the connection ({self.received} bytes, {where})"
                    finish(ProtocolError(self.redact(msg), self.url))
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

        deadline_at = conn.deadline_at

        def idle_check():
            if done.done():
                return
            now = perf()
            if deadline_at is not None and now >= deadline_at - 0.001:
                finish(self.client._deadline_error(self.method, self.url, conn.deadline, self.received))
                return
            idle = now - conn.last_activity
            if idle >= self.timeout:
                msg = f"{self.method} {self.url}: no byte for {self.timeout:g} s after {self.received} bytes"
                finish(RequestTimeoutError(self.redact(msg), self.url))
            else:
                delay = self.timeout - idle
                timer[0] = loop.call_later(delay if deadline_at is None else min(delay, deadline_at - now), idle_check)

        loop.add_reader(raw.fileno(), readable)
        first = self.timeout if deadline_at is None else min(self.timeout, deadline_at - perf())
        timer.append(loop.call_later(first, idle_check))
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
    """Blocking facade over :class:`AsyncClient` on a private event loop, for probes made one at a time.

    Every request method takes the keyword arguments of its :class:`AsyncClient` counterpart, ``timeout`` and
    ``deadline`` included.
    """

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
