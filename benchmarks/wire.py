# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Ground truth from the wire: what a benchmark run's token times were, read from a capture of its loopback traffic.

A client's timestamps are what is being judged, so the truth must come from outside every client: the kernel's
capture of the packets. :class:`Capture` runs ``dumpcap`` (Wireshark's capture engine, from Debian's ``tshark``
package) on ``lo`` with a filter on the server's port, bounded in time and size. :func:`read_capture` asks
``tshark`` for every TCP segment (time, addresses, sequence number, payload), puts each direction of each connection
back together in sequence order (retransmitted bytes keep their first time; a hole is an error), splits the client's
side into HTTP/1.1 requests and the server's into answers, undoes the chunked framing and splits event streams into
SSE events. Every byte keeps the capture time of the segment that carried it, so:

- a request starts at the time of the segment carrying its first byte (what a client stamps just before it writes);
- an event happens at the time of the segment that carries its last byte (the blank line that ends it): the moment
  a client holding every earlier byte can parse it.

:func:`truth` then applies vLLM's rules (``vllm bench serve``'s, as ``kimi.vllm.vllm_bench`` implements them: a
chunk is a token event when its first choice carries output; output tokens from the usage chunk) to the last
``count`` streamed answers, and computes the metrics both clients report, independently of either client's code.

On loopback a segment is captured as it is sent and handed to the receiving socket right after, on the same core,
so the capture time is when the bytes became readable at the client, to within microseconds.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

TSHARK_FIELDS = (
    "frame.time_epoch",
    "ip.src",
    "tcp.srcport",
    "ip.dst",
    "tcp.dstport",
    "tcp.seq_raw",
    "tcp.len",
    "tcp.flags.syn",
    "tcp.payload",
)


class WireError(Exception):
    """The capture cannot give a truth (lost packets, a cut capture, an answer it cannot parse)."""


class Capture:
    """``dumpcap`` on one interface and TCP port, bounded in time and size; a context manager.

    ``seconds`` and ``max_kb`` are dumpcap's own stop conditions (``-a duration:``, ``-a filesize:``): a capture
    that reaches either stopped early and is refused (:attr:`cut`), as is one whose kernel counters show dropped
    packets. The snap length keeps whole loopback segments (lo's MTU is 65,536).
    """

    def __init__(self, port: int, path, *, seconds: int = 900, max_kb: int = 1_000_000, iface: str = "lo") -> None:
        """Capture ``tcp port PORT`` on ``iface`` into ``path`` (pcapng)."""
        self.port = port
        self.path = Path(path)
        self.seconds = seconds
        self.max_kb = max_kb
        self.iface = iface
        self.proc = None
        self.stderr = ""
        self.cut = False
        self.dropped = None
        self.packets = None
        self.settle = 0.5
        self.prefix = []  # e.g. ["taskset", "-c", "1"]: where dumpcap runs

    def argv(self) -> list:
        """The dumpcap command line."""
        dumpcap = shutil.which("dumpcap") or "/usr/bin/dumpcap"
        argv = [*self.prefix, dumpcap, "-q", "-i", self.iface, "-f", f"tcp port {self.port}", "-s", "262144"]
        return [*argv, "-w", str(self.path), "-a", f"duration:{self.seconds}", "-a", f"filesize:{self.max_kb}"]

    def __enter__(self) -> Capture:
        """Start dumpcap and wait until it says it is capturing."""
        if self.path.exists():
            self.path.unlink()
        self.proc = subprocess.Popen(self.argv(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("File:"):
                time.sleep(0.1)  # the filter is attached before dumpcap names its file; a margin all the same
                return self
        self.proc.kill()
        self.proc.wait()
        raise WireError(f"dumpcap did not start capturing on {self.iface}: {''.join(seen).strip() or 'no output'}")

    def __exit__(self, *exc_info) -> None:
        """Stop dumpcap (SIGINT) once it has had time to take in the last packets; read its counters."""
        self.cut = self.proc.poll() is not None  # it stopped on its own: a limit was reached
        if not self.cut:
            # Packets still in the kernel's capture buffer when dumpcap is told to stop are lost (seen here: a
            # run's last segments missing); it reads the buffer at least every 0.1 s.
            time.sleep(self.settle)
            self.proc.send_signal(signal.SIGINT)
        try:
            _out, rest = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, rest = self.proc.communicate()
        self.stderr = rest or ""
        m = re.search(r"Packets received/dropped on interface '.*?': (\d+)/(\d+)", self.stderr)
        if m:
            self.packets, self.dropped = int(m.group(1)), int(m.group(2))

    def check(self) -> None:
        """Raise :class:`WireError` unless the capture is whole (and dumpcap said so)."""
        if self.cut:
            raise WireError(
                f"the capture stopped at its limit ({self.seconds} s or {self.max_kb} kB) before the run ended: "
                "raise seconds / max_kb"
            )
        if self.dropped is None:
            raise WireError(f"dumpcap did not report its packet counts: {self.stderr.strip()[-300:] or 'no output'}")
        if self.dropped:
            raise WireError(f"the kernel dropped {self.dropped} of {self.packets} packets: the capture is not whole")


# ---- reassembly ------------------------------------------------------------------------------------------------


class Flow:
    """One direction of one TCP connection: its bytes in order, each with the time of the segment that carried it."""

    def __init__(self) -> None:
        """Empty."""
        self.isn = None
        self.segments = []  # (sequence number, capture time, payload)
        self.data = b""
        self.ends = []  # end offset (exclusive) of each piece of data, in order
        self.times = []  # capture time of each piece

    def assemble(self) -> None:
        """Order the segments; keep the first copy of retransmitted bytes; refuse holes."""
        if self.isn is None:  # no SYN in the capture: the connection was open before it started
            raise WireError("a connection without its SYN in the capture (it was open before the capture started)")
        base = self.isn + 1
        parts = []
        end = 0
        for seq, t, payload in sorted(self.segments, key=lambda s: ((s[0] - base) % 2**32, s[1])):
            off = (seq - base) % 2**32
            if off > end:
                raise WireError(f"{off - end} bytes missing from a connection at offset {end}: the capture lost them")
            new = payload[end - off :]
            if not new:
                continue
            parts.append(new)
            end += len(new)
            self.ends.append(end)
            self.times.append(t)
        self.data = b"".join(parts)

    def time_at(self, offset: int) -> float:
        """Capture time of the segment that carried byte ``offset``."""
        i = bisect.bisect_right(self.ends, offset)
        if i >= len(self.times):
            raise WireError(f"offset {offset} past the end of a flow of {len(self.data)} bytes")
        return self.times[i]


def read_segments(path, tshark: str | None = None):
    """Yield ``(time, (src, sport), (dst, dport), seq, syn, payload)`` for every TCP segment of a capture."""
    tshark = tshark or shutil.which("tshark") or "/usr/bin/tshark"
    argv = [tshark, "-r", str(path), "-n", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"]
    for name in TSHARK_FIELDS:
        argv += ["-e", name]
    env = dict(os.environ, LC_ALL="C")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        parts = line.rstrip("\n").split("\t")
        if len(parts) < len(TSHARK_FIELDS) or not parts[5]:
            continue
        t, src, sport, dst, dport, seq, length, syn, payload = parts[: len(TSHARK_FIELDS)]
        data = bytes.fromhex(payload) if payload else b""
        if len(data) != int(length or 0):
            raise WireError(f"a segment of {length} bytes was captured with {len(data)}: the snap length cut it")
        yield float(t), (src, int(sport)), (dst, int(dport)), int(seq), syn in ("1", "True"), data
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise WireError(f"tshark failed on {path}: {err.strip()[:400]}")


def flows(path, server_port: int) -> list:
    """``[(client Flow, server Flow)]`` for every connection to ``server_port`` in the capture, by first SYN."""
    table = {}
    order = []
    for t, src, dst, seq, syn, payload in read_segments(path):
        if dst[1] == server_port:
            key, side = (src, dst), 0
        elif src[1] == server_port:
            key, side = (dst, src), 1
        else:
            continue
        if key not in table:
            table[key] = (Flow(), Flow())
            order.append(key)
        flow = table[key][side]
        if syn:
            flow.isn = seq
        elif payload:
            flow.segments.append((seq, t, payload))
    out = []
    for key in order:
        client, server = table[key]
        if not client.segments:
            continue  # a connection that carried no request (a port probe)
        client.assemble()
        server.assemble()
        out.append((client, server))
    return out


# ---- HTTP/1.1 and SSE ------------------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request and its answer, with wire times."""

    method: str
    path: str
    start: float  # first byte of the request
    status: int = 0
    content_type: str = ""
    end: float = 0.0  # last byte of the answer
    events: list = field(default_factory=list)  # (time, data bytes) per SSE event with data


def _head(data: bytes, at: int):
    """``(first line, headers, offset after the head)`` of the head that starts at ``at``."""
    end = data.find(b"\r\n\r\n", at)
    if end < 0:
        raise WireError(f"an HTTP head without its end at offset {at}")
    lines = data[at:end].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _sep, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, end + 4


def _requests(flow: Flow) -> list:
    """The requests on a client flow, in order."""
    out = []
    at = 0
    data = flow.data
    while at < len(data):
        line, headers, body_at = _head(data, at)
        method, path = line.split(" ")[:2]
        if headers.get("transfer-encoding", "").lower() == "chunked":
            raise WireError("a chunked request body (the clients measured here send Content-Length)")
        length = int(headers.get("content-length", "0"))
        out.append(Exchange(method, path, flow.time_at(at)))
        at = body_at + length
    return out


def _chunks(data: bytes, at: int):
    """Yield ``(offset, length)`` of each chunk's data from ``at``; return the offset after the last chunk."""
    while True:
        eol = data.find(b"\r\n", at)
        if eol < 0:
            raise WireError(f"an answer that ends inside a chunk size line (offset {at}): the capture is cut short")
        size = int(data[at:eol].split(b";")[0], 16)
        at = eol + 2
        if size == 0:
            while True:  # trailers, then the blank line
                eol = data.find(b"\r\n", at)
                if eol < 0:
                    raise WireError("an answer cut inside its trailers")
                done = eol == at
                at = eol + 2
                if done:
                    return at
        yield at, size
        at += size + 2


_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def _sse(pieces, flow: Flow) -> list:
    """``[(time, data)]`` of the SSE events in ``pieces`` (``(offset, length)`` of body bytes on ``flow``)."""
    body = bytearray()
    where = []  # (body offset of a piece, flow offset of that piece)
    for off, length in pieces:
        where.append((len(body), off))
        body += flow.data[off : off + length]
    starts = [w[0] for w in where]
    events = []
    pos = 0
    for m in _EVENT_END.finditer(body):
        block = bytes(body[pos : m.start()])
        last = m.end() - 1  # the byte that completes the event
        i = bisect.bisect_right(starts, last) - 1
        t = flow.time_at(where[i][1] + last - where[i][0])
        pos = m.end()
        data = [ln[5:].lstrip(b" ") if ln.startswith(b"data:") else None for ln in re.split(rb"\r\n|\n|\r", block)]
        data = [d for d in data if d is not None]
        if data:
            events.append((t, b"\n".join(data)))
    return events


def exchanges(client: Flow, server: Flow) -> list:
    """The request/answer pairs of one connection (HTTP/1.1, one answer per request, in order)."""
    reqs = _requests(client)
    at = 0
    data = server.data
    for ex in reqs:
        if at >= len(data):
            break  # no answer (yet) in the capture
        line, headers, body_at = _head(data, at)
        ex.status = int(line.split(" ")[1])
        if 100 <= ex.status < 200:
            line, headers, body_at = _head(data, body_at)
            ex.status = int(line.split(" ")[1])
        ex.content_type = headers.get("content-type", "")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            pieces = []
            gen = _chunks(data, body_at)
            try:
                while True:
                    pieces.append(next(gen))
            except StopIteration as stop:
                at = stop.value
        elif "content-length" in headers:
            pieces = [(body_at, int(headers["content-length"]))]
            at = body_at + pieces[0][1]
        else:  # until the connection closes
            pieces = [(body_at, len(data) - body_at)]
            at = len(data)
        ex.end = server.time_at(max(at - 1, 0))
        if ex.content_type.startswith("text/event-stream"):
            ex.events = _sse(pieces, server)
    return reqs


def read_capture(path, server_port: int) -> list:
    """Every exchange with ``server_port`` in the capture, ordered by the time its request started."""
    out = []
    for client, server in flows(path, server_port):
        out.extend(exchanges(client, server))
    out.sort(key=lambda ex: ex.start)
    return out


# ---- the truth -------------------------------------------------------------------------------------------------


def _default_is_token(path: str, doc: dict) -> bool:
    """vLLM's rule, from the collection's module_utils (the same rule both clients apply)."""
    from ansible_collections.kimi.vllm.plugins.module_utils import _bench

    choices = doc.get("choices")
    if not choices:
        return False
    rule = _bench.chat_token_text if "chat" in path else _bench.completion_token_text
    return rule(choices[0]) is not None


@dataclass
class RequestTruth:
    """One streamed request as the wire saw it (times in seconds, capture clock)."""

    start: float
    end: float
    token_times: list
    output_tokens: int
    tokens_counted_by: str

    @property
    def ttft(self) -> float:
        """First token event - first request byte."""
        return self.token_times[0] - self.start

    @property
    def latency(self) -> float:
        """Last token event - first request byte."""
        return self.token_times[-1] - self.start

    @property
    def itls(self) -> list:
        """Gaps between consecutive token events."""
        t = self.token_times
        return [b - a for a, b in zip(t, t[1:])]


def request_truths(exs, count: int, is_token=None) -> list:
    """The last ``count`` streamed 200 answers as :class:`RequestTruth` (earlier ones were a client's warm-up)."""
    is_token = is_token or _default_is_token
    streamed = [ex for ex in exs if ex.method == "POST" and ex.status == 200 and ex.events]
    if len(streamed) < count:
        raise WireError(f"the capture holds {len(streamed)} streamed answers, the run sent {count}")
    out = []
    for ex in streamed[len(streamed) - count :]:
        times = []
        usage = None
        for t, data in ex.events:
            if not data.startswith(b"{"):
                continue  # [DONE]
            doc = json.loads(data)
            if is_token(ex.path, doc):
                times.append(t)
            elif doc.get("usage"):
                usage = doc["usage"].get("completion_tokens")
        if not times:
            raise WireError(f"a streamed answer to {ex.path} without a token event")
        by = "usage" if usage else "token events"
        out.append(RequestTruth(ex.start, ex.end, times, usage or len(times), by))
    return out


def _q(values, p):
    """Percentile ``p`` (0-100) with linear interpolation, as numpy's default (what vLLM uses)."""
    s = sorted(values)
    if not s:
        return 0.0
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def truth(exs, count: int, is_token=None) -> dict:
    """The metrics of the run's last ``count`` streamed requests, by vLLM's definitions, from wire times (ms)."""
    reqs = request_truths(exs, count, is_token)
    ttfts = [r.ttft for r in reqs]
    itls = [g for r in reqs for g in r.itls]
    tpots = [(r.latency - r.ttft) / (r.output_tokens - 1) for r in reqs if r.output_tokens > 1]
    start = min(r.start for r in reqs)
    end = max(r.end for r in reqs)
    duration = end - start
    out_tokens = sum(r.output_tokens for r in reqs)
    return {
        "completed": len(reqs),
        "duration_s": duration,
        "total_output_tokens": out_tokens,
        "output_throughput": out_tokens / duration,
        "mean_ttft_ms": statistics.fmean(ttfts) * 1000,
        "median_ttft_ms": _q(ttfts, 50) * 1000,
        "mean_tpot_ms": statistics.fmean(tpots) * 1000 if tpots else 0.0,
        "median_tpot_ms": _q(tpots, 50) * 1000,
        "mean_itl_ms": statistics.fmean(itls) * 1000 if itls else 0.0,
        "median_itl_ms": _q(itls, 50) * 1000,
        "p99_itl_ms": _q(itls, 99) * 1000,
        "mean_e2el_ms": statistics.fmean(r.latency for r in reqs) * 1000,
        "zero_itls": sum(1 for g in itls if g == 0),
        "itls": len(itls),
        "tokens_counted_by": sorted({r.tokens_counted_by for r in reqs}),
    }
