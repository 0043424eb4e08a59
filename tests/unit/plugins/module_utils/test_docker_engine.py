# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for module_utils._docker_engine and vllm_server_wait against a fake Docker engine.

The fake speaks the Engine API's framing for the two calls the client makes (inspect and logs) on a Unix
socket, a plain TCP port and a TLS port. The real engine is exercised by tests/integration.
"""

from __future__ import annotations

import ast
import http.server
import json
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
from pathlib import Path
from unittest import mock

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.kimi.vllm.plugins.module_utils import _docker_engine as engine_mod
from ansible_collections.kimi.vllm.plugins.module_utils._docker_engine import (
    EngineClient,
    EngineError,
    EngineStatusError,
    demultiplex,
    settings_from_params,
)
from ansible_collections.kimi.vllm.plugins.modules import vllm_server_wait


def frame(stream: int, payload: bytes) -> bytes:
    """One frame of the multiplexed log format."""
    return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(payload)) + payload


def container_doc(name="kimi-vllm", running=True, tty=False, exit_code=0, restarts=0, oom=False):
    """The parts of an inspect answer that the client and the module read."""
    return {
        "Id": f"{name}-id0123456789",
        "Name": "/" + name,
        "RestartCount": restarts,
        "Config": {"Tty": tty},
        "State": {
            "Status": "running" if running else "exited",
            "Running": running,
            "Restarting": False,
            "ExitCode": exit_code,
            "OOMKilled": oom,
        },
    }


class FakeEngine:
    """Containers by name, their log bytes, and every request path seen."""

    def __init__(self):
        self.containers: dict[str, dict] = {}
        self.logs: dict[str, bytes] = {}
        self.content_type: str | None = None  # None: like API < 1.42, no framing content type
        self.requests: list[str] = []

    def handler(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def address_string(self):
                return "fake"

            def _send(self, status, body, content_type="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                fake.requests.append(self.path)
                parts = self.path.split("?")[0].split("/")
                name = parts[-2] if len(parts) >= 3 else ""
                by_id = {doc["Id"]: key for key, doc in fake.containers.items()}
                key = by_id.get(name, name)
                if key not in fake.containers:
                    return self._send(404, json.dumps({"message": f"No such container: {name}"}).encode())
                if parts[-1] == "json":
                    return self._send(200, json.dumps(fake.containers[key]).encode())
                if parts[-1] == "logs":
                    ctype = fake.content_type or "text/plain"
                    return self._send(200, fake.logs.get(key, b""), ctype)
                return self._send(500, b"not modelled")

        return Handler


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def engine(tmp_path):
    """A fake engine on a Unix socket; yields (fake, docker_host)."""
    fake = FakeEngine()
    path = tmp_path / "docker.sock"
    server = _UnixServer(str(path), fake.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, f"unix://{path}"
    server.shutdown()
    server.server_close()


def client_for(host, **settings):
    return EngineClient(dict({"docker_host": host, "timeout": 5, "api_version": "auto"}, **settings))


def test_demultiplex_joins_stdout_and_stderr_in_order():
    raw = frame(1, b"loading\n") + frame(2, b"warning\n") + frame(1, b"") + frame(1, b"ready\n")
    assert demultiplex(raw) == b"loading\nwarning\nready\n"


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (frame(1, b"abc")[:6], "inside a frame header"),
        (frame(1, b"abcdef")[:10], "inside a frame of 6 bytes"),
        (b"plain text, not framed", "no frame header"),
    ],
)
def test_demultiplex_refuses_what_is_not_framed(raw, what):
    with pytest.raises(EngineError, match=what):
        demultiplex(raw)


def test_inspect_and_missing_container(engine):
    fake, host = engine
    fake.containers["kimi-vllm"] = container_doc()
    client = client_for(host)
    assert client.container("kimi-vllm")["State"]["Running"] is True
    assert client.container("absent") is None
    assert fake.requests == ["/containers/kimi-vllm/json", "/containers/absent/json"]


def test_names_are_quoted_into_the_path(engine):
    fake, host = engine
    assert client_for(host).container("a b/../c") is None
    assert fake.requests == ["/containers/a%20b%2F..%2Fc/json"]


def test_api_version_prefix(engine):
    fake, host = engine
    client_for(host, api_version="1.41").container("x")
    client_for(host, api_version="v1.43").container("x")
    assert fake.requests == ["/v1.41/containers/x/json", "/v1.43/containers/x/json"]


@pytest.mark.parametrize("content_type", [None, "application/vnd.docker.multiplexed-stream"])
def test_logs_of_a_container_without_tty_are_demultiplexed(engine, content_type):
    fake, host = engine
    fake.content_type = content_type
    fake.containers["kimi-vllm"] = container_doc()
    fake.logs["kimi-vllm"] = frame(1, b"INFO one\n\n") + frame(2, b"ERROR two\n") + frame(1, b"INFO three\n")
    client = client_for(host)
    doc = client.container("kimi-vllm")
    assert client.logs(doc, 2) == ["ERROR two", "INFO three"]
    assert fake.requests[-1] == "/containers/kimi-vllm-id0123456789/logs?stdout=1&stderr=1&timestamps=0&follow=0&tail=2"


@pytest.mark.parametrize("content_type", [None, "application/vnd.docker.raw-stream"])
def test_logs_of_a_tty_container_are_raw(engine, content_type):
    fake, host = engine
    fake.content_type = content_type
    fake.containers["kimi-vllm"] = container_doc(tty=True)
    fake.logs["kimi-vllm"] = b"line one\r\nline two\r\n"
    client = client_for(host)
    assert client.logs(client.container("kimi-vllm"), 5) == ["line one", "line two"]


def test_an_engine_error_keeps_the_engines_message(engine):
    fake, host = engine
    fake.containers["kimi-vllm"] = container_doc()
    client = client_for(host)
    doc = client.container("kimi-vllm")
    del fake.containers["kimi-vllm"]
    with pytest.raises(EngineStatusError, match="HTTP 404: No such container") as info:
        client.logs(doc, 5)
    assert info.value.status == 404


def test_an_unreachable_engine_names_the_host(tmp_path):
    host = f"unix://{tmp_path}/nothing.sock"
    with pytest.raises(EngineError, match=f"no answer from the Docker engine at {host}"):
        client_for(host).container("x")


def test_oversized_answer_is_refused(engine, monkeypatch):
    fake, host = engine
    monkeypatch.setattr(engine_mod, "MAX_RESPONSE_BYTES", 100)
    fake.containers["big"] = dict(container_doc(), Padding="x" * 200)
    with pytest.raises(EngineError, match="larger than 100 bytes"):
        client_for(host).container("big")


@pytest.mark.parametrize(
    ("host", "what"),
    [
        ("ssh://root@node", "ssh:// is not supported"),
        ("npipe:////./pipe/docker_engine", "expected unix://PATH"),
        ("tcp://:2375", "has no host name"),
    ],
)
def test_hosts_it_cannot_use(host, what):
    with pytest.raises(EngineError, match=what):
        client_for(host)


def _tcp_engine(fake, context=None):
    server = _TCPServer(("127.0.0.1", 0), fake.handler())
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_plain_tcp_engine():
    fake = FakeEngine()
    fake.containers["x"] = container_doc("x")
    server = _tcp_engine(fake)
    try:
        port = server.server_address[1]
        assert client_for(f"tcp://127.0.0.1:{port}").container("x")["Id"] == "x-id0123456789"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for the name 'engine.test' (openssl, from the OS)."""
    where = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=engine.test",
         "-addext", "subjectAltName=DNS:engine.test",
         "-keyout", str(where / "key.pem"), "-out", str(where / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return where


def test_tls_engine_verified_by_name_and_ca(certificate):
    fake = FakeEngine()
    fake.containers["x"] = container_doc("x")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate / "cert.pem", certificate / "key.pem")
    server = _tcp_engine(fake, context)
    try:
        host = f"tcp://127.0.0.1:{server.server_address[1]}"
        ca = str(certificate / "cert.pem")
        verified = client_for(host, validate_certs=True, ca_path=ca, tls_hostname="engine.test")
        assert verified.container("x")["Id"] == "x-id0123456789"
        with pytest.raises(EngineError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            client_for(host, validate_certs=True, ca_path=ca).container("x")  # the name is not 127.0.0.1
        assert client_for(host, tls=True).container("x") is not None  # TLS without verification
        with pytest.raises(EngineError, match="no answer"):
            client_for(host).container("x")  # plain HTTP to a TLS port
    finally:
        server.shutdown()
        server.server_close()


def test_docker_cert_path_supplies_the_certificates(tmp_path, monkeypatch):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    settings = settings_from_params({"ca_path": None, "client_cert": "/given/cert.pem", "client_key": None})
    assert settings["ca_path"] == str(tmp_path / "ca.pem")
    assert settings["client_cert"] == "/given/cert.pem"
    assert settings["client_key"] == str(tmp_path / "key.pem")


# The module, against the fake engine.


class ModuleDone(Exception):  # noqa: N818 - it carries a result
    """Raised instead of exit_json / fail_json."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


def run_wait(args: dict) -> dict:
    """vllm_server_wait.main() with ``args``; the result it exited or failed with."""

    def done(_module, **result):
        raise ModuleDone(result)

    def failed(_module, **result):
        raise ModuleDone(dict(result, failed=True))

    with patch_module_args(args), mock.patch.multiple(AnsibleModule, exit_json=done, fail_json=failed):
        try:
            vllm_server_wait.main()
        except ModuleDone as exc:
            return exc.result
    pytest.fail("the module returned without exit_json or fail_json")


def test_module_fails_clearly_when_there_is_no_container(engine):
    _fake, host = engine
    result = run_wait({"container": "absent", "docker_host": host})
    assert result["failed"]
    assert result["msg"].startswith(f"There is no container 'absent' on the Docker engine at {host}")
    assert "docker ps -a --filter name=absent" in result["msg"]


def test_module_reports_an_exit_with_the_log_tail(engine):
    fake, host = engine
    fake.containers["kimi-vllm"] = container_doc(running=False, exit_code=137, oom=True)
    fake.logs["kimi-vllm"] = b"".join(frame(1, f"line {i}\n".encode()) for i in range(10))
    result = run_wait({"container": "kimi-vllm", "docker_host": host, "log_lines": 3})
    assert not result.get("failed")
    assert result["exited"] and not result["ready"]
    assert (result["state"], result["exit_code"], result["oom_killed"]) == ("exited", 137, True)
    assert result["log_tail"] == ["line 7", "line 8", "line 9"]
    assert result["last_log_line"] == "line 9"


def test_module_reports_a_restart(engine):
    fake, host = engine
    fake.containers["kimi-vllm"] = container_doc(restarts=2)
    fake.logs["kimi-vllm"] = frame(2, b"RuntimeError: CUDA out of memory\n")
    result = run_wait({"container": "kimi-vllm", "docker_host": host, "restart_count": 1})
    assert result["restarted"] and not result["exited"]
    assert result["log_tail"] == ["RuntimeError: CUDA out of memory"]


def test_module_gives_up_the_step_while_the_server_is_not_answering(engine, tmp_path):
    fake, host = engine
    fake.containers["kimi-vllm"] = container_doc()
    fake.logs["kimi-vllm"] = frame(1, b"Loading safetensors checkpoint shards: 12%\n")
    closed = _TCPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there now
    result = run_wait(
        {"container": "kimi-vllm", "docker_host": host, "url": f"http://127.0.0.1:{port}",
         "step_seconds": 1, "poll_interval": 1}
    )  # fmt: skip
    assert not result["ready"] and not result["exited"]
    assert result["server"].startswith("not answering yet")
    assert result["last_log_line"] == "Loading safetensors checkpoint shards: 12%"


def test_module_takes_docker_host_from_the_environment(engine, monkeypatch):
    _fake, host = engine
    monkeypatch.setenv("DOCKER_HOST", host)
    result = run_wait({"container": "absent"})
    assert f"Docker engine at {host}" in result["msg"]


def test_module_imports_only_the_standard_library_ansible_and_this_collection():
    """No other collection's code (community.docker's module_utils are private from 5.0), no requests or SDK."""
    for source in (vllm_server_wait.__file__, engine_mod.__file__):
        tree = ast.parse(Path(source).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                allowed = (
                    top in sys.stdlib_module_names
                    or top == "__future__"
                    or name.startswith(("ansible.module_utils", "ansible_collections.kimi.vllm."))
                )
                assert allowed, f"{Path(source).name} imports {name}"
