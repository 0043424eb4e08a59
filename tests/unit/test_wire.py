# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""benchmarks/wire.py, the benchmarks' ground truth: reassembly and event times by hand, then a real capture.

The capture test runs dumpcap and tshark (Debian's tshark package; tests/host-packages.sh installs it for
``make test``) on loopback while the module's client streams from segment_server.py, and holds the wire's token
times to the server's own send log: the truth must agree with the one party that knows when each token left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests" / "unit" / "plugins" / "module_utils"))

import wire  # noqa: E402 - benchmarks/ is not a package
from segment_server import chunk as sse  # noqa: E402 - one SSE event as one HTTP chunk

TOKEN = b'{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}'
ROLE = b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}'
USAGE = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}'
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
BODY = b'{"model":"m","stream":true}'
REQUEST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


def flow(pieces, isn=1000):
    """A Flow from ``[(time, bytes)]`` in sending order, sequence numbers counted from ``isn``."""
    f = wire.Flow()
    f.isn = isn
    seq = isn + 1
    for t, data in pieces:
        f.segments.append((seq % 2**32, t, data))
        seq += len(data)
    return f


def answer_pieces():
    """An answer whose second token event is split across two segments, and whose chunk size line is split too."""
    t2 = sse(TOKEN)
    return [
        (1.010, HEAD + sse(ROLE)),
        (1.020, sse(TOKEN)),
        (1.030, t2[:20]),
        (1.035, t2[20:-3]),  # the event's blank line not yet complete
        (1.040, t2[-3:] + sse(TOKEN)[:1]),  # its end, and the first byte of the next chunk's size line
        (1.050, sse(TOKEN)[1:] + sse(USAGE) + sse(b"[DONE]") + b"0\r\n\r\n"),
    ]


def test_event_times_are_those_of_the_segment_that_completes_each_event():
    client = flow([(1.000, REQUEST[:10]), (1.001, REQUEST[10:])])
    server = flow(answer_pieces(), isn=2**32 - 5)  # sequence numbers wrap inside the answer
    client.assemble()
    server.assemble()
    (ex,) = wire.exchanges(client, server)
    assert (ex.method, ex.path, ex.status, ex.start) == ("POST", "/v1/chat/completions", 200, 1.000)
    assert ex.content_type == "text/event-stream"
    assert [t for t, _d in ex.events] == [1.010, 1.020, 1.040, 1.050, 1.050, 1.050]
    assert ex.events[-1][1] == b"[DONE]"
    assert ex.end == 1.050
    reqs = wire.request_truths([ex], 1)
    assert reqs[0].token_times == [1.020, 1.040, 1.050]  # the role chunk is no token event (vLLM's rule)
    assert reqs[0].output_tokens == 3
    assert reqs[0].tokens_counted_by == "usage"
    m = wire.truth([ex], 1)
    assert m["mean_ttft_ms"] == pytest.approx(20.0)
    assert m["mean_itl_ms"] == pytest.approx(15.0)
    assert m["median_itl_ms"] == pytest.approx(15.0)
    assert m["mean_tpot_ms"] == pytest.approx(15.0)
    assert m["output_throughput"] == pytest.approx(3 / 0.050)


def test_out_of_order_and_retransmitted_segments():
    pieces = answer_pieces()
    server = flow(pieces)
    # the third segment sent again later (a retransmission): its bytes keep their first time
    seq, _t, payload = server.segments[2]
    server.segments.append((seq, 1.2, payload))
    server.segments.reverse()  # as tshark could list them after a reorder
    server.assemble()
    client = flow([(1.0, REQUEST)])
    client.assemble()
    (ex,) = wire.exchanges(client, server)
    assert [t for t, _d in ex.events][:3] == [1.010, 1.020, 1.040]


def test_a_hole_or_a_missing_syn_is_refused():
    server = flow(answer_pieces())
    del server.segments[2]
    with pytest.raises(wire.WireError, match="bytes missing"):
        server.assemble()
    server = flow(answer_pieces())
    server.isn = None
    with pytest.raises(wire.WireError, match="without its SYN"):
        server.assemble()


def test_keep_alive_exchanges_and_warm_up_left_out():
    body = b'{"ok":1}'
    plain = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    client = flow([(0.5, health), (0.9, REQUEST), (2.0, REQUEST)])
    late = [(t + 1.0, d) for t, d in answer_pieces()]
    server = flow([(0.6, plain), *answer_pieces(), *late])
    client.assemble()
    server.assemble()
    exs = wire.exchanges(client, server)
    assert [(e.method, e.status, bool(e.events)) for e in exs] == [("GET", 200, False), ("POST", 200, True)] * 1 + [
        ("POST", 200, True)
    ]
    # the run sent one request: the earlier stream was a warm-up
    (req,) = wire.request_truths(exs, 1)
    assert req.start == 2.0
    with pytest.raises(wire.WireError, match="holds 2 streamed answers, the run sent 3"):
        wire.request_truths(exs, 3)


def can_capture() -> str:
    """Why a capture cannot run here ('' when it can)."""
    if not shutil.which("dumpcap") or not shutil.which("tshark"):
        return "dumpcap/tshark missing: tests/host-packages.sh test installs Debian's tshark"
    probe = subprocess.run(["dumpcap", "-D"], capture_output=True, text=True, check=False)
    if probe.returncode != 0 or "lo" not in probe.stdout:
        return f"dumpcap cannot list interfaces: {probe.stderr.strip()[:200]}"
    return ""


@pytest.mark.skipif(
    not shutil.which("dumpcap") or (os.geteuid() != 0 and bool(can_capture())),
    reason="no dumpcap here (the compat container), or capturing needs root or the wireshark group",
)
def test_a_real_capture_agrees_with_the_servers_send_log(tmp_path):
    reason = can_capture()
    assert not reason, reason
    from test_bench_timing import SERVER, run_client

    log = tmp_path / "sent.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--gap-us", "500", "--log", str(log)], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(proc.stdout.readline())
        cap = wire.Capture(port, tmp_path / "run.pcapng", seconds=60, max_kb=50_000)
        with cap:
            records = run_client(port, 8)
        cap.check()
        assert cap.packets > 8 * 40 and cap.dropped == 0
    finally:
        proc.terminate()
        proc.wait(10)
    assert all(r.success for r in records)
    sent = {rec["max_tokens"]: rec["sent"] for rec in map(json.loads, log.read_text().splitlines())}
    exs = wire.read_capture(tmp_path / "run.pcapng", port)
    assert [e.method for e in exs].count("GET") == 4  # open_connections' /health on each connection
    reqs = wire.request_truths(exs, 8)
    offsets = []
    for req in reqs:
        truth = sent[req.output_tokens]
        assert len(req.token_times) == len(truth)
        # capture clock (wall) against the server's perf_counter: compare shapes, not clocks
        shift = req.token_times[0] - truth[0]
        offsets.extend(abs(w - shift - s) for w, s in zip(req.token_times, truth))
    offsets.sort()
    median = offsets[len(offsets) // 2]
    assert median < 50e-6, f"wire vs send log: median {median * 1e6:.1f} us, max {offsets[-1] * 1e6:.1f} us"
    m = wire.truth(exs, 8)
    assert m["median_itl_ms"] == pytest.approx(0.5, rel=0.2)
    assert m["zero_itls"] == 0
