# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""An SSE server that sends every token in its own TCP segment, a few hundred microseconds apart, to all streams.

For test_bench_timing.py: a real vLLM on a fast machine sends one chunk per token per stream, each in its own
segment, and steps much faster than the stand-in's 20 ms. One sender thread keeps one clock for every open stream:
each tick (``--gap-us``) it writes each stream its next token chunk with one ``send`` on a TCP_NODELAY socket, and
logs when the send returned (``time.perf_counter()``, CLOCK_MONOTONIC, the same clock as the client's). A stream
gets ``max_completion_tokens`` (or ``max_tokens``) tokens, then the usage chunk and ``[DONE]``. On exit (SIGTERM) it
writes the log as JSON lines, ``{"max_tokens": N, "sent": [t, ...]}`` per stream. Prints its port when listening.

Only ``POST /v1/chat/completions`` (streamed) and ``GET /health``; one request per connection at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sys
import threading
import time

ROLE = (
    b'{"id":"chatcmpl-seg","object":"chat.completion.chunk","created":0,"model":"seg","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}'
)
TOKEN = (
    b'{"id":"chatcmpl-seg","object":"chat.completion.chunk","created":0,"model":"seg","choices":[{"index":0,'
    b'"delta":{"content":" tok"},"logprobs":null,"finish_reason":null}]}'
)
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(payload: bytes) -> bytes:
    """One SSE event as one HTTP chunk."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def usage(n: int) -> bytes:
    """The usage chunk of a stream of ``n`` tokens."""
    doc = {"id": "chatcmpl-seg", "object": "chat.completion.chunk", "created": 0, "model": "seg", "choices": []}
    doc["usage"] = {"prompt_tokens": 8, "total_tokens": 8 + n, "completion_tokens": n}
    return chunk(json.dumps(doc, separators=(",", ":")).encode())


class Stream:
    """One streamed answer in progress."""

    def __init__(self, sock, max_tokens: int) -> None:
        self.sock = sock
        self.max_tokens = max_tokens
        self.sent = []
        self.done = threading.Event()


class Server:
    """Listener, one reader thread per connection, one sender thread for all streams."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.lock = threading.Lock()
        self.active = []
        self.log = []
        self.listener = socket.create_server(("127.0.0.1", 0))

    def serve_connection(self, sock) -> None:
        """Read requests; hand streamed ones to the sender and wait until each is finished."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _sep, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    name, _sep, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += sock.recv(65536)
                body, buf = buf[:length], buf[length:]
                if lines[0].startswith("GET /health"):
                    sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    continue
                doc = json.loads(body)
                stream = Stream(sock, int(doc.get("max_completion_tokens") or doc.get("max_tokens") or 16))
                sock.sendall(HEAD + chunk(ROLE))
                with self.lock:
                    self.active.append(stream)
                stream.done.wait()
        except OSError:
            return
        finally:
            sock.close()

    def send_loop(self) -> None:
        """Every tick, one token to every active stream, each in its own send."""
        token = chunk(TOKEN)
        tick = time.perf_counter()
        while True:
            # The next tick a gap after this one, or now if this one ran late: never two ticks back to back, so
            # the gaps in the log are what the client must see, not a catch-up burst.
            tick = max(tick + self.gap, time.perf_counter())
            while (wait := tick - time.perf_counter()) > 0:
                time.sleep(wait)
            with self.lock:
                streams = list(self.active)
            for s in streams:
                try:
                    s.sock.send(token)
                except OSError:  # the client went away: drop the stream
                    with self.lock:
                        self.active.remove(s)
                    s.done.set()
                    continue
                s.sent.append(time.perf_counter())
                if len(s.sent) == s.max_tokens:
                    with contextlib.suppress(OSError):
                        s.sock.sendall(usage(s.max_tokens) + chunk(b"[DONE]") + b"0\r\n\r\n")
                    with self.lock:
                        self.active.remove(s)
                        self.log.append({"max_tokens": s.max_tokens, "sent": s.sent})
                    s.done.set()

    def accept_loop(self) -> None:
        """Accept connections forever."""
        while True:
            sock, _addr = self.listener.accept()
            threading.Thread(target=self.serve_connection, args=(sock,), daemon=True).start()


def main() -> None:
    """Serve until SIGTERM; then write the send log."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gap-us", type=float, default=400.0)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    server = Server(args.gap_us / 1e6)

    def stop(_sig, _frame):
        with server.lock, open(args.log, "w", encoding="utf-8") as fh:
            for rec in server.log:
                fh.write(json.dumps(rec) + "\n")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=server.send_loop, daemon=True).start()
    print(server.listener.getsockname()[1], flush=True)
    server.accept_loop()


if __name__ == "__main__":
    main()
