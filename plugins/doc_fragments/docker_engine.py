# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Options of modules that read the Docker Engine API themselves (module_utils._docker_engine.ENGINE_ARGUMENT_SPEC)."""


class ModuleDocFragment:
    """How to reach the Docker engine: the documentation of ENGINE_ARGUMENT_SPEC.

    The names, aliases, defaults and environment variables are community.docker's, so that a play's
    C(module_defaults) for the Docker modules and this collection's modules can share them.
    """

    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - The Docker engine's API endpoint, as the Docker CLI's C(DOCKER_HOST) takes it.
      - C(unix:///path/to/docker.sock) for a Unix socket, C(tcp://HOST:PORT) for a TCP endpoint (with TLS when
        O(tls) or O(validate_certs) is set), or C(https://HOST:PORT).
      - C(ssh://) endpoints are not supported; the module runs on the node, so point it at the node's socket.
      - If not given, the environment variable E(DOCKER_HOST) is used when set.
    type: str
    default: unix:///var/run/docker.sock
    aliases: [docker_url]
  tls_hostname:
    description:
      - The server name expected in the engine's TLS certificate, when it is not the host name of O(docker_host).
      - If not given, the environment variable E(DOCKER_TLS_HOSTNAME) is used when set.
    type: str
  api_version:
    description:
      - The Engine API version to ask for, for example C(1.43).
      - C(auto) uses the engine's own newest version (unversioned request paths).
      - If not given, the environment variable E(DOCKER_API_VERSION) is used when set.
    type: str
    default: auto
    aliases: [docker_api_version]
  timeout:
    description:
      - Seconds to wait for one answer of the engine.
      - If not given, the environment variable E(DOCKER_TIMEOUT) is used when set.
    type: int
    default: 60
  ca_path:
    description:
      - A CA certificate (PEM) to verify the engine's certificate with, when O(validate_certs) is set.
      - If not given and E(DOCKER_CERT_PATH) is set, C(ca.pem) in that directory is used when present.
    type: path
    aliases: [ca_cert, tls_ca_cert, cacert_path]
  client_cert:
    description:
      - The client certificate (PEM) to present to a TLS engine.
      - If not given and E(DOCKER_CERT_PATH) is set, C(cert.pem) in that directory is used when present.
    type: path
    aliases: [tls_client_cert, cert_path]
  client_key:
    description:
      - The key (PEM) of O(client_cert).
      - If not given and E(DOCKER_CERT_PATH) is set, C(key.pem) in that directory is used when present.
    type: path
    aliases: [tls_client_key, key_path]
  tls:
    description:
      - Talk TLS to a C(tcp://) engine without verifying its certificate. O(validate_certs) takes precedence.
      - If not given, the environment variable E(DOCKER_TLS) is used when set.
    type: bool
    default: false
  use_ssh_client:
    description:
      - Accepted so that community.docker's C(module_defaults) apply; it has no effect, as C(ssh://) endpoints
        are not supported.
    type: bool
    default: false
  validate_certs:
    description:
      - Talk TLS to a C(tcp://) engine and verify its certificate (against O(ca_path) when given, the system's
        CAs otherwise) and its name (O(tls_hostname) or the host name of O(docker_host)).
      - If not given, the environment variable E(DOCKER_TLS_VERIFY) is used when set.
    type: bool
    default: false
    aliases: [tls_verify]
  debug:
    description:
      - Accepted so that community.docker's C(module_defaults) apply; it has no effect.
    type: bool
    default: false
"""
