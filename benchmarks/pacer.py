# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A paced SSE server for the instrument's cost and ceiling benchmarks: it can offer more tokens than a client takes.

The stand-in (tests/standin) keeps one timer per stream and tops out near 33k chunks/s on one core here, below what
the clients must be measured at (100k tokens/s offered, and a ceiling above both clients). This server keeps one
clock for all streams: every ``--gap-ms`` it writes each stream the chunks that are due (several at once when it
fell behind), each carrying ``--tokens-per-chunk`` tokens in vLLM's chunk format, then the usage chunk and
``[DONE]``. It answers ``GET /health``, ``GET /v1/models`` and streamed ``POST /v1/chat/completions``, nothing
else (no /tokenize: clients fall back to their own prompts). ``--truth-log`` records, per request, when each
token chunk was written, in the stand-in's truth-log format, so ``instrument.py`` reads both the same way.

A benchmark tool, not a server model: it says nothing about vLLM. Numbers measured against it are SIMULATED.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

MODEL = "pacer"


def chunk_bytes(payload: bytes) -> bytes:
    """One SSE event as one HTTP chunk."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def token_chunk(tokens: int) -> bytes:
    """A vLLM chat chunk carrying ``tokens`` tokens of content."""
    doc = {
        "id": "chatcmpl-pacer",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": {"content": " tok" * tokens}, "logprobs": None, "finish_reason": None}],
    }
    return chunk_bytes(json.dumps(doc, separators=(",", ":")).encode())


ROLE = chunk_bytes(
    b'{"id":"chatcmpl-pacer","object":"chat.completion.chunk","created":0,"model":"pacer","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}'
)


def response(status: bytes, body: bytes) -> bytes:
    """A JSON answer with its length."""
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


class Stream:
    """One streamed answer: what is due, what was sent, when."""

    __slots__ = ("chunks", "done", "first_due", "prompt_tokens", "recv_mono", "recv_wall", "sent", "times", "writer")

    def __init__(self, writer, chunks: int, first_due: float, recv_mono: float, prompt_tokens: int) -> None:
        self.writer = writer
        self.chunks = chunks
        self.first_due = first_due
        self.recv_mono = recv_mono
        self.recv_wall = time.time() - (time.perf_counter() - recv_mono)
        self.prompt_tokens = prompt_tokens
        self.sent = 0
        self.times = []
        self.done = asyncio.get_running_loop().create_future()


class Pacer:
    """The server and its one clock."""

    def __init__(self, args) -> None:
        self.args = args
        self.gap = args.gap_ms / 1000
        self.ttft = args.ttft_ms / 1000
        self.per_chunk = args.tokens_per_chunk
        self.chunk = token_chunk(self.per_chunk)
        self.active = []
        self.truth = open(args.truth_log, "a", encoding="utf-8") if args.truth_log else None  # noqa: SIM115

    async def tick(self) -> None:
        """Every gap, write each stream the chunks due by now, in one write."""
        next_t = time.perf_counter()
        while True:
            next_t += self.gap
            delay = next_t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_t = time.perf_counter()  # behind: do not burst to catch up the clock itself
                await asyncio.sleep(0)
            now = time.perf_counter()
            finished = []
            for s in self.active:
                if now < s.first_due:
                    continue
                due = min(s.chunks, int((now - s.first_due) / self.gap) + 1)
                n = due - s.sent
                if n <= 0:
                    continue
                data = (ROLE if s.sent == 0 else b"") + self.chunk * n
                s.times.extend([now] * n)
                s.sent = due
                if s.sent == s.chunks:
                    data += self.tail(s)
                    finished.append(s)
                s.writer.write(data)
            for s in finished:
                self.active.remove(s)
                s.done.set_result(None)

    def tail(self, s: Stream) -> bytes:
        tokens = s.chunks * self.per_chunk
        usage = {"prompt_tokens": s.prompt_tokens, "total_tokens": s.prompt_tokens + tokens}
        usage["completion_tokens"] = tokens
        doc = {"id": "chatcmpl-pacer", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
        doc.update(choices=[], usage=usage)
        return chunk_bytes(json.dumps(doc, separators=(",", ":")).encode()) + chunk_bytes(b"[DONE]") + b"0\r\n\r\n"

    def log(self, s: Stream) -> None:
        if not self.truth:
            return
        rel = [t - s.recv_mono for t in s.times]
        rec = {
            "status": 200,
            "scripted": True,
            "t_first_byte_rel": 0.0,
            "t_recv_mono": s.recv_mono,
            "t_recv_wall": s.recv_wall,
            "completion_tokens": s.chunks * self.per_chunk,
            "chunk_t_rel": rel,
            "chunk_t_wall": [s.recv_wall + rel[0]],
            "chunk_tokens": [self.per_chunk] * len(rel),
        }
        self.truth.write(json.dumps(rec) + "\n")
        self.truth.flush()

    async def handle(self, reader, writer) -> None:
        """Serve requests on one keep-alive connection."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {k.strip().lower(): v.strip() for k, _sep, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                recv = time.perf_counter()
                if method == "GET" and path in ("/health", "/v1/models"):
                    doc = {"object": "list", "data": [{"id": MODEL, "object": "model", "root": MODEL}]}
                    out = b"" if path == "/health" else json.dumps(doc).encode()
                    writer.write(response(b"200 OK", out))
                    continue
                if method != "POST" or path != "/v1/chat/completions":
                    out = b'{"detail":"Not Found"}'
                    writer.write(response(b"404 Not Found", out))
                    continue
                req = json.loads(body)
                tokens = int(req.get("max_completion_tokens") or req.get("max_tokens") or 16)
                chunks = max(1, -(-tokens // self.per_chunk))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                s = Stream(writer, chunks, recv + self.ttft, recv, len(body) // 5)
                self.active.append(s)
                await s.done
                self.log(s)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def serve(self) -> None:
        server = await asyncio.start_server(self.handle, "127.0.0.1", self.args.port, backlog=4096)
        asyncio.get_running_loop().create_task(self.tick())
        print(f"pacer listening on 127.0.0.1:{self.args.port}", flush=True)
        async with server:
            await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ttft-ms", type=float, default=100)
    ap.add_argument("--gap-ms", type=float, default=20)
    ap.add_argument("--tokens-per-chunk", type=int, default=1)
    ap.add_argument("--truth-log")
    asyncio.run(Pacer(ap.parse_args()).serve())


if __name__ == "__main__":
    main()
