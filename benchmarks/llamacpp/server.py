# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""llama-cpp-python's OpenAI server (``python -m llama_cpp.server``) with one setting changed: any x-request-id.

The server's request-id middleware (starlette-context's RequestIdPlugin) answers 400 with an empty body to a request
whose ``x-request-id`` is not a UUID, and ``vllm bench serve`` 0.32.0 sends ``bench-<hex>-<n>`` on every request,
so every one of its requests failed. The plugin's own ``validate`` option is turned off; nothing else changes.
"""

from __future__ import annotations

import functools
import runpy

from starlette_context.plugins import RequestIdPlugin

RequestIdPlugin.__init__ = functools.partialmethod(RequestIdPlugin.__init__, validate=False)
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
