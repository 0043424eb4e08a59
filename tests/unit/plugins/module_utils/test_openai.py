# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for module_utils._openai: body framing, SSE parsing, and the client against scripted raw servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc

import pytest
from ansible_collections.kimi.vllm.plugins.module_utils._openai import (
    MAX_ERROR_BODY_BYTES,
    MAX_EVENT_BYTES,
    REDACTED,
    AsyncClient,
    ChunkedDecoder,
    Client,
    ConnectError,
    ConnectTimeoutError,
    HTTPStatusError,
    ProtocolError,
    RequestDeadlineError,
    RequestTimeoutError,
    SSEParser,
    error_text,
    parse_head,
)

KEY = "sk-unit-0123456789abcdef"


# ---- framing ------------------------------------------------------------------------------------------------------

CHUNKED = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n"


def test_chunked_whole():
    decoder = ChunkedDecoder()
    assert decoder.feed(CHUNKED) == b"hello, world"
    assert decoder.done
    assert decoder.extra == b""


def test_chunked_split_at_every_byte():
    for cut in range(1, len(CHUNKED)):
        decoder = ChunkedDecoder()
        out = decoder.feed(CHUNKED[:cut]) + decoder.feed(CHUNKED[cut:])
        assert out == b"hello, world", cut
        assert decoder.done, cut


def test_chunked_byte_by_byte_and_extra():
    decoder = ChunkedDecoder()
    out = b"".join(decoder.feed(bytes([byte])) for byte in CHUNKED[:-1])
    assert not decoder.done
    out += decoder.feed(CHUNKED[-1:] + b"HTTP/1.1")
    assert out == b"hello, world"
    assert decoder.done and decoder.extra == b"HTTP/1.1"


@pytest.mark.parametrize(
    "raw",
    [b"zz\r\nhello\r\n", b"5\r\nhelloXX", b"-5\r\nhello\r\n", b"\r\n", b"0x5\r\nhello\r\n", b"1" * 5000],
)
def test_chunked_bad_framing(raw):
    with pytest.raises(ValueError, match="chunk"):
        ChunkedDecoder().feed(raw)


SSE = (
    b'data: {"a": 1}\n\n'
    b": a comment\n\n"
    b'event: message_start\ndata: {"type": "message_start"}\n\n'
    b"id: 7\nretry: 10\ndata: line one\ndata:line two\n\n"
    b"data: [DONE]\n\n"
)
SSE_EVENTS = [
    (b"", b'{"a": 1}'),
    (b"message_start", b'{"type": "message_start"}'),
    (b"", b"line one\nline two"),
    (b"", b"[DONE]"),
]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_sse_every_split_and_line_ending(newline):
    raw = SSE.replace(b"\n", newline)
    for cut in range(1, len(raw)):
        parser = SSEParser()
        events = parser.feed(raw[:cut]) + parser.feed(raw[cut:]) + parser.close()
        assert events == SSE_EVENTS, (newline, cut)


def test_sse_batches_per_feed():
    parser = SSEParser()
    assert parser.feed(b"data: 1\n\ndata: 2\n\ndata: 3") == [(b"", b"1"), (b"", b"2")]
    assert parser.feed(b"\n\n") == [(b"", b"3")]


def test_sse_ending_inside_an_event():
    parser = SSEParser()
    parser.feed(b'data: {"a": 1}\n\ndata: {"b"')
    with pytest.raises(ValueError, match="inside an event"):
        parser.close()


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_sse_byte_by_byte(newline):
    raw = SSE.replace(b"\n", newline)
    parser = SSEParser()
    events = [event for byte in raw for event in parser.feed(bytes([byte]))] + parser.close()
    assert events == SSE_EVENTS, newline


def test_sse_event_larger_than_a_read():
    data = bytes(range(32, 127)) * 30000  # 2.85 MB, in reads of 64 KiB
    raw = b"data: " + data + b"\n\ndata: next\n\n"
    parser = SSEParser()
    events = [event for at in range(0, len(raw), 65536) for event in parser.feed(raw[at : at + 65536])]
    assert events == [(b"", data), (b"", b"next")]


def test_sse_without_separator_is_cut_at_max_event_bytes():
    parser = SSEParser()
    line = b"data: " + b"x" * 65529 + b"\n"  # 64 KiB lines, never a blank one
    with pytest.raises(ValueError, match=r"the server sent \d+ bytes without an event separator") as caught:
        for _read in range(1000):
            parser.feed(line)
            assert len(parser._buf) <= MAX_EVENT_BYTES  # nothing beyond one event is ever held
    assert _read == MAX_EVENT_BYTES // len(line)
    assert str(MAX_EVENT_BYTES) in str(caught.value)


def test_sse_one_complete_event_over_the_cap():
    with pytest.raises(ValueError, match="without an event separator"):
        SSEParser().feed(b"data: " + b"x" * MAX_EVENT_BYTES + b"\n\n")


def test_parse_head():
    status, reason, headers = parse_head(b"HTTP/1.1 404 Not Found\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0")
    assert (status, reason, headers) == (404, "Not Found", {"x-a": "1, 2", "content-length": "0"})
    assert parse_head(b"HTTP/1.0 200")[:2] == (200, "")
    for bad in (b"SSH-2.0-OpenSSH", b"HTTP/1.1 2000 OK", b"HTTP/1.1 200 OK\r\nno colon"):
        with pytest.raises(ValueError):
            parse_head(bad)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            b'{"error": {"message": "The model `x` does not exist.", "type": "NotFoundError"}}',
            "The model `x` does not exist.",
        ),
        (b'{"object": "error", "message": "legacy shape"}', "legacy shape"),
        (b'{"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic"}}', "anthropic"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b'{"error": "Unauthorized"}', "Unauthorized"),
        (b"Internal Server Error\n", "Internal Server Error"),
        (b"x" * 1000, "x" * 297 + "..."),
    ],
)
def test_error_text(body, text):
    assert error_text(body) == text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host", "must be http"),
        ("http://", "must be http"),
        ("http://u:p@host", "credentials"),
        ("http://host/?a=1", "query"),
        ("http://host:99999", "bad port"),
    ],
)
def test_bad_urls(url, message):
    with pytest.raises(ValueError, match=message):
        AsyncClient(url)


def test_url_forms():
    client = AsyncClient("https://[::1]:8443/prefix/")
    assert (client.host, client.port, client.prefix, client.host_header) == ("::1", 8443, "/prefix", "[::1]:8443")
    assert client.url("/v1/models") == "https://[::1]:8443/prefix/v1/models"
    assert AsyncClient("http://example.com").host_header == "example.com"
    assert AsyncClient("https://example.com:443").url("/x") == "https://example.com/x"


# ---- a scripted raw server ------------------------------------------------------------------------------------------


class RawServer:
    """Serves each accepted connection with ``script(conn, rfile, index)``; counts connections, keeps requests."""

    def __init__(self, script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._tls = tls
        self.port = self._sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _addr = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            index = self.connections
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            if self._tls:
                conn = self._tls.wrap_socket(conn, server_side=True)
            self._open.append(conn)
            with conn, conn.makefile("rb") as rfile:
                self.script(conn, rfile, index, self)

    def read_request(self, rfile) -> bytes | None:
        """One request (head and Content-Length body), recorded; None at EOF."""
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = rfile.readline()
            if not line:
                return None
            head += line
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = head + rfile.read(length)
        self.requests.append(request)
        return request

    def close(self) -> None:
        self._sock.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture
def raw_server():
    servers = []

    def start(script, tls=None):
        server = RawServer(script, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def respond(body: bytes, status: str = "200 OK", ctype: str = "application/json", extra: bytes = b"") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


def chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"


def keep_alive(answer):
    """A script that answers every request on the connection with ``answer(request)``."""

    def script(conn, rfile, index, server):
        while (request := server.read_request(rfile)) is not None:
            conn.sendall(answer(request))

    return script


def test_keep_alive_reuses_one_connection(raw_server):
    server = raw_server(keep_alive(lambda request: respond(b'{"ok": true}')))
    with Client(server.url, api_key=KEY, timeout=5) as client:
        for _request in range(3):
            response = client.post("/v1/x", {"q": "é"})
            assert response.status == 200 and response.json() == {"ok": True}
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert f"Authorization: Bearer {KEY}\r\n".encode() in first
    assert b"Content-Type: application/json\r\n" in first
    assert first.endswith('{"q":"é"}'.encode())


def test_auth_false_sends_no_key(raw_server):
    server = raw_server(keep_alive(lambda request: respond(b"{}")))
    with Client(server.url, api_key=KEY, timeout=5) as client:
        client.get("/health", auth=False, headers={"x-extra": "1"})
    assert b"Authorization" not in server.requests[0]
    assert b"x-extra: 1\r\n" in server.requests[0]


def test_chunked_and_close_delimited_bodies(raw_server):
    def script(conn, rfile, index, server):
        server.read_request(rfile)
        if index == 0:
            head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            conn.sendall(head + chunk(b'{"a"') + chunk(b": 1}") + b"0\r\n\r\n")
            server.read_request(rfile)
            conn.sendall(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close")

    server = raw_server(script)
    with Client(server.url, timeout=5) as client:
        assert client.get("/a").json() == {"a": 1}
        response = client.get("/b")
        assert response.text() == "until close"
        assert not client.aio._idle  # a close-delimited body leaves nothing to reuse


def test_100_continue_is_skipped(raw_server):
    server = raw_server(keep_alive(lambda request: b"HTTP/1.1 100 Continue\r\n\r\n" + respond(b"{}")))
    with Client(server.url, timeout=5) as client:
        assert client.get("/").status == 200


def test_stale_keep_alive_connection_is_retried(raw_server):
    def script(conn, rfile, index, server):
        server.read_request(rfile)
        conn.sendall(respond(b'{"n": %d}' % index))
        server.read_request(rfile)  # then closes without answering, as an idle timeout racing a request does

    server = raw_server(script)
    with Client(server.url, timeout=5) as client:
        assert client.get("/").json() == {"n": 0}
        assert client.get("/").json() == {"n": 1}
    assert server.connections == 2


def test_server_that_never_answers_a_fresh_connection(raw_server):
    server = raw_server(lambda conn, rfile, index, srv: srv.read_request(rfile))
    with Client(server.url, timeout=5) as client, pytest.raises(ProtocolError, match="without answering"):
        client.get("/")
    assert server.connections == 1  # a fresh connection is not retried


def test_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with Client(url, timeout=2) as client, pytest.raises(ConnectError, match=f"GET {url}/health: cannot connect"):
            client.get("/health")


def test_connect_timeout_is_both_kinds():
    assert issubclass(ConnectTimeoutError, ConnectError)
    assert issubclass(ConnectTimeoutError, RequestTimeoutError)


def test_no_answer_times_out(raw_server):
    server = raw_server(lambda conn, rfile, index, srv: time.sleep(3))
    started = time.monotonic()
    with Client(server.url, timeout=0.3) as client, pytest.raises(
        RequestTimeoutError, match=r"no answer within 0\.3 s"
    ):
        client.get("/slow")
    assert time.monotonic() - started < 1.5


def test_slow_stream_keeps_going_while_bytes_arrive(raw_server):
    def script(conn, rfile, index, server):
        server.read_request(rfile)
        conn.sendall(STREAM_HEAD)
        for n in range(6):
            time.sleep(0.1)
            conn.sendall(chunk(b"data: %d\n\n" % n))
        time.sleep(0.6)  # longer than the timeout: the watchdog fires

    server = raw_server(script)
    with Client(server.url, timeout=0.35) as client, pytest.raises(RequestTimeoutError) as caught:
        client.stream("/v1/chat/completions", {})
    assert "the stream stopped for 0.35 s after" in str(caught.value)
    assert "(6 events received before)" in str(caught.value)


def test_status_errors_quote_the_server_and_hide_the_key(raw_server):
    def answer(request):
        doc = {"error": {"message": "echo: " + request.split(b"Authorization: ")[1].split(b"\r\n")[0].decode()}}
        return respond(json.dumps(doc).encode(), "401 Unauthorized")

    server = raw_server(keep_alive(answer))
    with Client(server.url, api_key=KEY, timeout=5) as client:
        response = client.get("/v1/models")
        with pytest.raises(HTTPStatusError) as caught:
            response.raise_for_status()
        with pytest.raises(HTTPStatusError) as streamed:
            client.stream("/v1/chat/completions", {})
    for exc in (caught.value, streamed.value):
        assert exc.status == 401
        assert KEY not in str(exc)
        assert f"HTTP 401 Unauthorized: echo: Bearer {REDACTED}" in str(exc)
    assert KEY.encode() in caught.value.body  # the raw body is kept as the server sent it


def test_malformed_json_names_the_url(raw_server):
    server = raw_server(keep_alive(lambda request: respond(b'{"data": [')))
    with Client(server.url, timeout=5) as client, pytest.raises(ProtocolError) as caught:
        client.get("/v1/models").json()
    assert str(caught.value).startswith(f"GET {server.url}/v1/models: HTTP 200 answer is not JSON")


def test_garbage_instead_of_http(raw_server):
    server = raw_server(keep_alive(lambda request: b"SSH-2.0-OpenSSH_9.6\r\n\r\n"))
    with Client(server.url, timeout=5) as client, pytest.raises(ProtocolError, match=r"not an HTTP/1\.x status line"):
        client.get("/")


def test_close_mid_body(raw_server):
    def script(conn, rfile, index, server):
        server.read_request(rfile)
        conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial')

    server = raw_server(script)
    with Client(server.url, timeout=5) as client, pytest.raises(ProtocolError, match="closed after 9 body bytes"):
        client.get("/")


def test_stream_events_timestamps_and_names(raw_server):
    def script(conn, rfile, index, server):
        while server.read_request(rfile) is not None:
            conn.sendall(STREAM_HEAD)
            for n in range(4):
                time.sleep(0.02)
                conn.sendall(chunk(b"event: tick\ndata: %d\n\n" % n))
            conn.sendall(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")

    server = raw_server(script)
    with Client(server.url, timeout=5) as client:
        for _stream in range(2):  # the second stream reuses the connection
            result = client.stream("/v1/chat/completions", {"stream": True})
            names = [name for _t, name, _data in result.events]
            data = [data for _t, _name, data in result.events]
            assert names == ["tick"] * 4 + [""]
            assert data == [b"0", b"1", b"2", b"3", b"[DONE]"]
            stamps = [t for t, _name, _data in result.events]
            assert stamps == sorted(stamps)
            assert stamps[3] - stamps[0] > 0.04  # stamped when read, not when parsed
            assert result.t_start <= stamps[0] <= result.t_end
    assert server.connections == 1


def test_stream_events_async_api(raw_server):
    def script(conn, rfile, index, server):
        server.read_request(rfile)
        conn.sendall(STREAM_HEAD + chunk(b"data: a\n\ndata: b\n\n") + chunk(b"data: c\n\n") + b"0\r\n\r\n")

    server = raw_server(script)

    async def main():
        client = AsyncClient(server.url, timeout=5)
        got = [data async for _t, data in client.stream_events("/s", content=b"{}")]
        await client.aclose()
        return got

    assert asyncio.run(main()) == [b"a", b"b", b"c"]


def test_stream_stopped_early_closes_the_connection(raw_server):
    def script(conn, rfile, index, server):
        while server.read_request(rfile) is not None:
            conn.sendall(STREAM_HEAD + chunk(b"data: 1\n\n"))
            time.sleep(0.2)
            conn.sendall(chunk(b"data: 2\n\n") + b"0\r\n\r\n")

    server = raw_server(script)

    async def main():
        client = AsyncClient(server.url, timeout=5)
        stream = client.stream_events("/s", {})
        async for _t, data in stream:
            assert data == b"1"
            break
        await stream.aclose()
        idle = len(client._idle)
        await client.aclose()
        return idle

    assert asyncio.run(main()) == 0


def test_stream_cut_mid_chunk(raw_server):
    def script(conn, rfile, index, server):
        server.read_request(rfile)
        conn.sendall(STREAM_HEAD + chunk(b"data: 1\n\n") + b'40\r\ndata: {"cut')

    server = raw_server(script)
    with Client(server.url, timeout=5) as client, pytest.raises(ProtocolError) as caught:
        client.stream("/v1/chat/completions", {})
    assert "the server closed the stream after" in str(caught.value)
    assert "mid-body (1 events received before)" in str(caught.value)


def test_stream_ending_inside_an_event(raw_server):
    def script(conn, rfile, index, server):
        server.read_request(rfile)
        conn.sendall(STREAM_HEAD + chunk(b'data: 1\n\ndata: {"half') + b"0\r\n\r\n")

    server = raw_server(script)
    with Client(server.url, timeout=5) as client, pytest.raises(ProtocolError, match="ended inside an event"):
        client.stream("/v1/chat/completions", {})


def test_stream_that_is_not_an_event_stream(raw_server):
    server = raw_server(keep_alive(lambda request: respond(b'{"choices": []}')))
    with Client(server.url, timeout=5) as client, pytest.raises(ProtocolError) as caught:
        client.stream("/v1/chat/completions", {})
    assert "expected an event stream (text/event-stream), got application/json" in str(caught.value)


def test_concurrent_streams_on_one_loop(raw_server):
    def script(conn, rfile, index, server):
        while server.read_request(rfile) is not None:
            conn.sendall(STREAM_HEAD)
            for n in range(5):
                time.sleep(0.01)
                conn.sendall(chunk(b'data: {"n": %d}\n\n' % n))
            conn.sendall(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")

    server = raw_server(script)

    async def main():
        client = AsyncClient(server.url, timeout=5)

        async def one():
            return sum([len(events) async for _t, events in client.stream_reads("/s", {})])

        counts = await asyncio.gather(*[one() for _stream in range(32)])
        await client.aclose()
        return counts

    assert asyncio.run(main()) == [6] * 32


# ---- bounds: the total deadline, one event's size, the error body, the key in messages ----------------------------


def stream_via(way, url, *, deadline=None, **client_kwargs):
    """The events of one stream, read through ``Client.stream`` or ``AsyncClient.stream_callback``."""
    if way == "stream":
        with Client(url, **client_kwargs) as client:
            return [(name, data) for _t, name, data in client.stream("/s", {}, deadline=deadline).events]

    async def main():
        client = AsyncClient(url, **client_kwargs)
        events = []
        try:
            await client.stream_callback("/s", lambda t, batch: events.extend(batch), content=b"{}", deadline=deadline)
        finally:
            await client.aclose()
        return events

    return asyncio.run(main())


def trickle(first: bytes, drip: bytes):
    """A script that sends ``first``, then ``drip`` one byte every 0.5 s: never idle for long, never done."""

    def script(conn, rfile, index, server):
        server.read_request(rfile)
        conn.sendall(first)
        for byte in drip:
            time.sleep(0.5)
            conn.sendall(bytes([byte]))

    return script


BIG_EVENT = chunk(b"data: " + b"x" * 100 + b"\n\n")


@pytest.mark.parametrize(
    ("way", "first", "drip"),
    [
        pytest.param("request", b"", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", id="request-head"),
        pytest.param("request", b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n", b"x" * 100, id="request-body"),
        pytest.param("stream", STREAM_HEAD + chunk(b"data: 1\n\n"), BIG_EVENT, id="stream_reads"),
        pytest.param("callback", STREAM_HEAD + chunk(b"data: 1\n\n"), BIG_EVENT, id="stream_callback"),
        pytest.param("callback-default", STREAM_HEAD + chunk(b"data: 1\n\n"), BIG_EVENT, id="client-default"),
    ],
)
def test_trickle_is_cut_at_the_total_deadline(raw_server, way, first, drip):
    server = raw_server(trickle(first, drip))
    started = time.monotonic()
    with pytest.raises(RequestDeadlineError) as caught:
        if way == "request":
            with Client(server.url, timeout=5) as client:
                client.get("/slow", deadline=2)
        elif way == "callback-default":  # the client's default deadline
            stream_via("callback", server.url, timeout=5, deadline=2)
        else:
            stream_via(way, server.url, timeout=5, deadline=2)
    elapsed = time.monotonic() - started
    assert isinstance(caught.value, RequestTimeoutError)
    assert 1.9 < elapsed < 2.5
    message = str(caught.value)
    assert message.startswith(f"{'GET' if way == 'request' else 'POST'} {server.url}/")
    assert re.search(r"the total deadline \(2 s\) passed after [1-9][0-9]* bytes", message), message


def test_deadline_leaves_prompt_answers_and_idle_connections_alone(raw_server):
    server = raw_server(keep_alive(lambda request: respond(b'{"ok": true}')))
    with Client(server.url, timeout=5, deadline=0.5) as client:
        assert client.get("/a").json() == {"ok": True}
        time.sleep(0.7)  # past the first request's deadline: its watchdog must not cut the idle connection
        assert client.get("/b", deadline=5).json() == {"ok": True}
    assert server.connections == 1


def test_deadline_passed_while_connecting_is_not_a_connect_error(monkeypatch):
    async def hang(*args, **kwargs):  # a host that drops the packets
        await asyncio.sleep(30)

    monkeypatch.setattr(asyncio, "open_connection", hang)
    with Client("http://127.0.0.1:9", timeout=5) as client, pytest.raises(RequestDeadlineError) as caught:
        client.get("/health", deadline=0.2)
    assert not isinstance(caught.value, ConnectError)
    assert "the total deadline (0.2 s) passed before a connection was made" in str(caught.value)


@pytest.mark.parametrize("way", ["stream", "callback"])
def test_stream_without_event_separator_fails_in_bounded_memory(raw_server, way):
    line = chunk(b"data: " + b"x" * 65000 + b"\n")  # data lines, never a blank one

    def script(conn, rfile, index, server):
        server.read_request(rfile)
        conn.sendall(STREAM_HEAD)
        for _line in range(50 * 1024 * 1024 // len(line)):  # 50 MB
            conn.sendall(line)
        conn.sendall(b"0\r\n\r\n")

    server = raw_server(script)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as caught:
            stream_via(way, server.url, timeout=10)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "bytes without an event separator" in str(caught.value)
    assert str(caught.value).startswith(f"POST {server.url}/s: the server sent ")
    assert peak < 3 * MAX_EVENT_BYTES, peak  # the whole 50 MB, kept, would be more than twice that


@pytest.mark.parametrize("way", ["stream", "callback"])
def test_big_error_body_is_capped(raw_server, way):
    body = b'{"error": {"message": "' + b"E" * (5 * 1024 * 1024) + b'"}}'
    server = raw_server(keep_alive(lambda request: respond(body, "500 Internal Server Error")))
    with pytest.raises(HTTPStatusError) as caught:
        stream_via(way, server.url, timeout=5)
    assert caught.value.status == 500
    assert len(caught.value.body) == MAX_ERROR_BODY_BYTES
    assert body.startswith(caught.value.body)
    assert "HTTP 500 Internal Server Error: " in str(caught.value)


def echo_key(status):
    """A script that answers ``status`` with a plain-text body that quotes the request's Authorization header."""

    def answer(request):
        auth = request.split(b"Authorization: ")[1].split(b"\r\n")[0]
        return respond(b"you sent " + auth, status, "text/plain")

    return keep_alive(answer)


@pytest.mark.parametrize("status", ["401 Unauthorized", "500 Internal Server Error"])
@pytest.mark.parametrize("way", ["request", "stream", "callback"])
def test_key_echoed_by_the_server_never_reaches_an_exception(raw_server, way, status):
    server = raw_server(echo_key(status))
    with pytest.raises(HTTPStatusError) as caught:
        if way == "request":
            with Client(server.url, api_key=KEY, timeout=5) as client:
                client.get("/v1/models").raise_for_status()
        else:
            stream_via(way, server.url, api_key=KEY, timeout=5)
    assert KEY not in str(caught.value)
    assert KEY not in caught.value.error_message()
    assert f"you sent Bearer {REDACTED}" in str(caught.value)
    assert caught.value.error_message() == f"you sent Bearer {REDACTED}"


def test_key_echoed_instead_of_an_event_stream(raw_server):
    server = raw_server(echo_key("200 OK"))
    with pytest.raises(ProtocolError) as caught:
        stream_via("stream", server.url, api_key=KEY, timeout=5)
    assert KEY not in str(caught.value) and f"you sent Bearer {REDACTED}" in str(caught.value)


def test_key_in_the_url_prefix_is_scrubbed_from_timeouts(raw_server):
    server = raw_server(lambda conn, rfile, index, srv: time.sleep(3))
    with Client(f"{server.url}/{KEY}", api_key=KEY, timeout=0.3) as client, pytest.raises(
        RequestTimeoutError
    ) as caught:
        client.get("/slow")
    assert KEY not in str(caught.value)
    assert f"GET {server.url}/{REDACTED}/slow: no answer within 0.3 s" in str(caught.value)


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *(
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(folder / "k.pem"),
                "-out",
                str(folder / "c.pem"),
            ),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "c.pem", folder / "k.pem")
    return context


def test_https_validates_certificates(raw_server, tls_context):
    server = raw_server(keep_alive(lambda request: respond(b'{"tls": true}')), tls=tls_context)
    with Client(server.url, timeout=5) as client, pytest.raises(ConnectError) as caught:
        client.get("/")
    assert "TLS failed" in str(caught.value) and "validate_certs=false" in str(caught.value)
    with Client(server.url, timeout=5, validate_certs=False) as client:
        assert client.get("/").json() == {"tls": True}
