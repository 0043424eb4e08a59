# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""llama-cpp-python's OpenAI server (``python -m llama_cpp.server``) with two request-parsing changes, so that
``vllm bench serve`` 0.32.0 and our client get answers at all. Generation and streaming are untouched.

- Any ``x-request-id``: the server's request-id middleware (starlette-context's RequestIdPlugin) answers 400 with an
  empty body to one that is not a UUID, and vllm bench serve sends ``bench-<hex>-<n>`` on every request. The
  plugin's own ``validate`` option is turned off.
- ``max_completion_tokens`` is read as ``max_tokens`` (which wins when both are sent): both clients send only the
  former, which the server does not know and drops, and then generates until the context is full.
"""

from __future__ import annotations

import functools
import runpy

from llama_cpp.server import types
from pydantic import AliasChoices
from starlette_context.plugins import RequestIdPlugin

RequestIdPlugin.__init__ = functools.partialmethod(RequestIdPlugin.__init__, validate=False)
# Before the app module is imported: FastAPI reads the request model when the routes are declared.
types.CreateChatCompletionRequest.model_fields["max_tokens"].validation_alias = AliasChoices(
    "max_tokens", "max_completion_tokens"
)
types.CreateChatCompletionRequest.model_rebuild(force=True)
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
