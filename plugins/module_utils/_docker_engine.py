# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A read-only client for the Docker Engine HTTP API, standard library only. Private to this collection.

Why not community.docker's client: from community.docker 5.0 its module_utils are private (the import paths
4.x had, ``module_utils.common_api`` among them, are gone), and a collection must not build on another
collection's private code. Why not the docker CLI: the CLI is a client of this same API, so going through it
adds a process per poll and a second place where output is parsed. The Engine API itself is public, versioned
and stable: the two calls made here (``GET /containers/{id}/json`` and ``GET /containers/{id}/logs``) have
not changed shape since API 1.24.

Connection settings follow the Docker CLI and community.docker: ``unix://`` sockets and ``tcp://`` hosts,
TLS when asked for (``tls``) or verified (``validate_certs``), certificates from ``DOCKER_CERT_PATH``.
``ENGINE_ARGUMENT_SPEC`` is the module side; the doc fragment ``kimi.vllm.docker_engine`` documents it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import struct
from urllib.parse import quote, urlencode, urlsplit

from ansible.module_utils.basic import env_fallback

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_TIMEOUT = 60
# A log tail is a few hundred lines; a response larger than this is not a log tail, it is a fault.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024

ENGINE_ARGUMENT_SPEC = {
    "docker_host": {
        "type": "str",
        "default": DEFAULT_DOCKER_HOST,
        "fallback": (env_fallback, ["DOCKER_HOST"]),
        "aliases": ["docker_url"],
    },
    "tls_hostname": {"type": "str", "fallback": (env_fallback, ["DOCKER_TLS_HOSTNAME"])},
    "api_version": {
        "type": "str",
        "default": "auto",
        "fallback": (env_fallback, ["DOCKER_API_VERSION"]),
        "aliases": ["docker_api_version"],
    },
    "timeout": {"type": "int", "default": DEFAULT_TIMEOUT, "fallback": (env_fallback, ["DOCKER_TIMEOUT"])},
    "ca_path": {"type": "path", "aliases": ["ca_cert", "tls_ca_cert", "cacert_path"]},
    "client_cert": {"type": "path", "aliases": ["tls_client_cert", "cert_path"]},
    "client_key": {"type": "path", "aliases": ["tls_client_key", "key_path"]},
    "tls": {"type": "bool", "default": False, "fallback": (env_fallback, ["DOCKER_TLS"])},
    "use_ssh_client": {"type": "bool", "default": False},
    "validate_certs": {
        "type": "bool",
        "default": False,
        "fallback": (env_fallback, ["DOCKER_TLS_VERIFY"]),
        "aliases": ["tls_verify"],
    },
    "debug": {"type": "bool", "default": False},
}
ENGINE_REQUIRED_TOGETHER = [["client_cert", "client_key"]]


def settings_from_params(params):
    """Connection settings from module parameters; ``DOCKER_CERT_PATH`` supplies the certificates not given.

    As with the Docker CLI, ``ca.pem``, ``cert.pem`` and ``key.pem`` in that directory are used when present.
    """
    settings = {key: params.get(key) for key in ENGINE_ARGUMENT_SPEC}
    cert_dir = os.environ.get("DOCKER_CERT_PATH")
    if cert_dir:
        for key, name in (("ca_path", "ca.pem"), ("client_cert", "cert.pem"), ("client_key", "key.pem")):
            if not settings[key] and os.path.exists(os.path.join(cert_dir, name)):
                settings[key] = os.path.join(cert_dir, name)
    return settings


class EngineError(Exception):
    """The engine could not be reached or gave an answer that is not the API's."""


class EngineStatusError(EngineError):
    """The engine answered with an HTTP error status."""

    def __init__(self, status, message):
        """Keep the status; the message is the engine's own ``message`` field when it sent one."""
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix domain socket (the engine's default endpoint)."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def demultiplex(raw):
    """Split a log stream in the engine's multiplexed format into text (stdout and stderr, in arrival order).

    Each frame is an 8-byte header (stream type, three zero bytes, payload length as a big-endian uint32)
    and its payload. Raises EngineError on a frame that does not fit.
    """
    out = bytearray()
    pos = 0
    while pos < len(raw):
        if len(raw) - pos < 8:
            raise EngineError(f"log stream ends inside a frame header at byte {pos}")
        stream, size = raw[pos], struct.unpack(">I", raw[pos + 4 : pos + 8])[0]
        if stream not in (0, 1, 2) or raw[pos + 1 : pos + 4] != b"\0\0\0":
            raise EngineError(f"log stream has no frame header at byte {pos}")
        pos += 8
        if len(raw) - pos < size:
            raise EngineError(f"log stream ends inside a frame of {size} bytes")
        out += raw[pos : pos + size]
        pos += size
    return bytes(out)


class EngineClient:
    """The few read-only calls the collection needs, each on a fresh connection (no pooling state to go stale)."""

    def __init__(self, settings):
        """``settings`` as settings_from_params returns them. Raises EngineError on a host it cannot use."""
        self.settings = settings
        self.host = settings.get("docker_host") or DEFAULT_DOCKER_HOST
        self.timeout = settings.get("timeout") or DEFAULT_TIMEOUT
        parts = urlsplit(self.host)
        self._scheme = parts.scheme
        if parts.scheme == "unix":
            self._socket_path = parts.path or "/var/run/docker.sock"
        elif parts.scheme in ("tcp", "http", "https"):
            if not parts.hostname:
                raise EngineError(f"docker_host {self.host!r} has no host name")
            self._tls = parts.scheme == "https" or settings.get("tls") or settings.get("validate_certs")
            self._address = (parts.hostname, parts.port or (2376 if self._tls else 2375))
        elif parts.scheme == "ssh":
            raise EngineError(
                f"docker_host {self.host!r}: ssh:// is not supported by this module; it runs on the node, so "
                "point it at the node's own socket (unix:///var/run/docker.sock) or a tcp:// endpoint"
            )
        else:
            raise EngineError(f"docker_host {self.host!r}: expected unix://PATH, tcp://HOST:PORT or https://HOST:PORT")
        version = str(settings.get("api_version") or "auto")
        # Unversioned paths get the engine's newest API version, which is what "auto" negotiates to.
        self._prefix = "" if version == "auto" else "/v" + version.lstrip("v")

    def _connection(self):
        if self._scheme == "unix":
            return _UnixHTTPConnection(self._socket_path, self.timeout)
        if not self._tls:
            return http.client.HTTPConnection(*self._address, timeout=self.timeout)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.settings.get("validate_certs"):
            if self.settings.get("ca_path"):
                context.load_verify_locations(cafile=self.settings["ca_path"])
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.settings.get("client_cert"):
            context.load_cert_chain(self.settings["client_cert"], self.settings.get("client_key"))
        return _TLSConnection(self._address, self.timeout, context, self.settings.get("tls_hostname"))

    def request(self, path, params=None):
        """GET ``path``; returns (status, headers, body bytes). Raises EngineError when the engine is unreachable."""
        url = self._prefix + path + ("?" + urlencode(params) if params else "")
        conn = self._connection()
        try:
            conn.request("GET", url, headers={"Accept": "application/json"})
            response = conn.getresponse()
            body = response.read(MAX_RESPONSE_BYTES + 1)
            if len(body) > MAX_RESPONSE_BYTES:
                raise EngineError(f"GET {path}: the answer is larger than {MAX_RESPONSE_BYTES} bytes")
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            raise EngineError(f"no answer from the Docker engine at {self.host} ({exc})") from exc
        finally:
            conn.close()

    def get_json(self, path, params=None):
        """GET ``path`` and decode its JSON; raises EngineStatusError on an HTTP error status."""
        status, _headers, body = self.request(path, params)
        if status >= 400:
            raise EngineStatusError(status, _error_message(body))
        try:
            return json.loads(body)
        except ValueError as exc:
            raise EngineError(f"GET {path}: the engine's answer is not JSON ({exc})") from exc

    def container(self, name):
        """The container's inspect data, or None when the engine has no container of that name or ID."""
        try:
            return self.get_json(f"/containers/{quote(name, safe='')}/json")
        except EngineStatusError as exc:
            if exc.status == 404:
                return None
            raise

    def logs(self, container, lines):
        """The container's last ``lines`` log lines (stdout and stderr together), as text."""
        params = {"stdout": 1, "stderr": 1, "timestamps": 0, "follow": 0, "tail": int(lines)}
        status, headers, body = self.request(f"/containers/{quote(container['Id'], safe='')}/logs", params)
        if status >= 400:
            raise EngineStatusError(status, _error_message(body))
        content_type = headers.get("content-type", "")
        # API >= 1.42 says which framing it used; before that, a container without a TTY means multiplexed.
        if "multiplexed-stream" in content_type:
            raw = demultiplex(body)
        elif "raw-stream" in content_type or (container.get("Config") or {}).get("Tty"):
            raw = body
        else:
            raw = demultiplex(body)
        text = raw.decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip()][-int(lines) :] if lines else []


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS to a tcp:// engine, with the server name given by tls_hostname when set."""

    def __init__(self, address, timeout, context, server_hostname):
        super().__init__(address[0], address[1], timeout=timeout, context=context)
        self._server_hostname = server_hostname or address[0]

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_hostname)


def _error_message(body):
    try:
        return str(json.loads(body).get("message", "")) or body.decode("utf-8", "replace")[:500]
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace")[:500]
