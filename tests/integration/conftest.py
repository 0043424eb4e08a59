# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Integration fixtures: the stand-in vLLM server (a test double) as a subprocess, and a deliberately bad server.

The collection is made importable the way tests/unit does it (that conftest is loaded from here, so running
``pytest tests/integration`` alone works too).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN = REPO_ROOT / "tests" / "standin" / "vllm_standin.py"


def _load_unit_conftest() -> None:
    if "ansible_collections.kimi.vllm.plugins.module_utils._openai" in sys.modules:
        return
    unit_conftest = REPO_ROOT / "tests" / "unit" / "conftest.py"
    spec = importlib.util.spec_from_file_location("kimi_vllm_unit_conftest", unit_conftest)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # makes ansible_collections.kimi.vllm importable


_load_unit_conftest()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StandinServer:
    """One stand-in server subprocess on a free 127.0.0.1 port (the stand-in loads in no time here)."""

    def __init__(self, flags: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``vllm_standin.py serve FLAGS --host 127.0.0.1 --port PORT`` with ``env`` added; wait until ready."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("STANDIN_", "VLLM_"))}
        environ.update({"STANDIN_LOAD_SECONDS": "0", "PYTHONUNBUFFERED": "1"})
        environ.update(env or {})
        argv = [sys.executable, str(STANDIN), "serve", *flags, "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"kimi-vllm-standin-{self.port}.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(argv, env=environ, stdout=self._log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                self._log_file.close()
                raise RuntimeError(f"stand-in exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"stand-in did not listen within 15 s: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; remove the log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()
        with contextlib.suppress(OSError):
            self.log.unlink()


def _standin_factory():
    """Yield ``start(flags, env)``, which starts a stand-in server; stop every one started afterwards."""
    started = []

    def start(flags: list[str], env: dict[str, str] | None = None) -> StandinServer:
        server = StandinServer(flags, env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def standin():
    """Factory: ``standin(flags, env)`` starts a stand-in server; every one started is stopped after the test."""
    yield from _standin_factory()


@pytest.fixture(scope="module")
def standin_module():
    """Like ``standin``, for servers shared by the tests of one module."""
    yield from _standin_factory()


# ---- a bad server -------------------------------------------------------------------------------------------------


class Request:
    """What the bad server read: method, path, lower-cased headers, body."""

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        """Keep the parts."""
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body

    def json(self) -> dict:
        """The body as JSON (an empty dict when there is none)."""
        return json.loads(self.body) if self.body else {}


def read_request(rfile) -> Request | None:
    """Read one HTTP/1.1 request with a Content-Length body; None at EOF."""
    line = rfile.readline()
    if not line:
        return None
    method, path, _version = line.decode("latin-1").split(" ", 2)
    headers = {}
    while True:
        line = rfile.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _sep, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = rfile.read(int(headers.get("content-length", "0") or 0))
    return Request(method, path.split("?", 1)[0], headers, body)


class BadServer:
    """A threaded HTTP server whose ``handler(request, conn)`` writes each answer to the socket; or one that hangs.

    ``handler`` returns False to close the connection after its answer. ``hang=True`` accepts connections and never
    answers.
    """

    def __init__(self, handler=None, hang: bool = False) -> None:
        """Listen on a free port and serve in a daemon thread."""
        self.handler = handler
        self.hang = hang
        self.requests: list[Request] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _addr = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError), conn, conn.makefile("rb") as rfile:
            while not self._stop.is_set():
                if self.hang:
                    self._stop.wait()
                    return
                request = read_request(rfile)
                if request is None:
                    return
                self.requests.append(request)
                if self.handler(request, conn) is False:
                    return

    def close(self) -> None:
        """Stop accepting and drop every connection."""
        self._stop.set()
        self._sock.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture
def bad_server():
    """Factory: ``bad_server(handler)`` or ``bad_server(hang=True)``; closed after the test."""
    servers = []

    def start(handler=None, hang: bool = False) -> BadServer:
        server = BadServer(handler, hang)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
