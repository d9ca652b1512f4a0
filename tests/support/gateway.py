"""Gateway test constants: the API keys the test gateways accept, and the type of the
``gateway`` fixture (a factory of gateways, each a context giving its URL)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

API_KEY = "test-key-one"
OTHER_KEY = "test-key-two"

Gateway = Callable[..., contextlib.AbstractAsyncContextManager[str]]
