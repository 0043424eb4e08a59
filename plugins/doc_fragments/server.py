# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Options every module that talks to the vLLM server shares (module_utils._openai.SERVER_ARGUMENT_SPEC)."""


class ModuleDocFragment:
    """How to reach the server: the documentation of SERVER_ARGUMENT_SPEC."""

    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the server, C(http[s]://host[:port]), optionally with a path prefix (for a server behind a
        reverse proxy). Request paths such as C(/v1/models) are appended to it.
      - Proxy environment variables are not used.
    type: str
    default: http://127.0.0.1:8000
  api_key:
    description:
      - >-
        The key the server was started with (C(--api-key) or C(VLLM_API_KEY)), sent as C(Authorization: Bearer),
        the only header vLLM reads.
      - Never returned or printed, also not inside error messages.
    type: str
  validate_certs:
    description:
      - Whether to verify the server's TLS certificate for C(https) URLs.
    type: bool
    default: true
"""
