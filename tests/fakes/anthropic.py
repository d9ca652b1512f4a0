"""A fake Anthropic Messages API speaking the real protocol, for tests of the real SDK.

    with FakeAnthropic() as fake:                 # serves on 127.0.0.1:<free port>
        client = AsyncAnthropic(api_key=fake.api_key, base_url=fake.url)
        fake.script(rate_limited(retry_after=1), tool_answer("...", cited_ids=[578]))
        fake.responder = grounded_answer          # what answers once the script is used up
        fake.requests                             # what arrived: body, headers, arrival time

``POST /v1/messages`` checks what the real API checks and the SDK relies on: the key
(``x-api-key`` or ``Authorization: Bearer``) and ``anthropic-version`` headers (401 ``authentication_error`` otherwise), the
body's shape (``model``, ``max_tokens``, alternating roles starting with ``user``, a forced
``tool_choice`` naming a defined tool, every ``tool_use`` answered by a ``tool_result`` with
its id in the next user turn, at most 4 ``cache_control`` breakpoints; 400
``invalid_request_error`` otherwise). Answers are ``message`` objects with ``tool_use`` or
``text`` content blocks and ``usage`` including the cache fields; errors use the API's JSON
shape ``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}`` and a
``request-id`` header.

Prompt caching is simulated: each ``cache_control`` breakpoint marks a prefix (tools, system,
messages in that order); a prefix seen before is reported as ``cache_read_input_tokens``, new
ones as ``cache_creation_input_tokens``. Unlike the real API there is no minimum length, so
small test prompts show the effect. Tokens are estimated as characters / 4.

The server runs uvicorn in a background thread with its own event loop, so a slow scripted
reply stalls only the client under test, and timings measured here are the client's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DEFAULT_MODEL = "claude-haiku-4-5"
MAX_BREAKPOINTS = 4


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status, a JSON body, headers and a delay before sending."""

    status: int = 200
    body: dict[str, Any] | None = None
    """For 200: the message's ``content`` blocks etc. are filled in by ``message()``."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def tool_answer(
    text: str,
    cited_ids: list[int] | None = None,
    fact_ids: list[str] | None = None,
    *,
    tool: str = "submit_explanation",
    delay_s: float = 0.0,
    extra: dict[str, Any] | None = None,
) -> Reply:
    """A ``tool_use`` answer calling ``tool`` with this input (``extra`` adds or overrides)."""
    payload: dict[str, Any] = {
        "text": text,
        "cited_ids": cited_ids or [],
        "fact_ids": fact_ids or [],
    }
    payload.update(extra or {})
    block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": tool}
    block["input"] = payload
    return Reply(body={"content": [block], "stop_reason": "tool_use"}, delay_s=delay_s)


def text_answer(text: str) -> Reply:
    """A plain text answer (the model did not call the tool)."""
    return Reply(body={"content": [{"type": "text", "text": text}], "stop_reason": "end_turn"})


def error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status=status,
        body={"type": "error", "error": {"type": kind, "message": message}},
        headers=dict(headers or {}),
    )


def rate_limited(retry_after: float = 1.0) -> Reply:
    return error(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit.",
        {"retry-after": f"{retry_after:g}"},
    )


def server_error() -> Reply:
    return error(500, "api_error", "Internal server error")


def overloaded() -> Reply:
    return error(529, "overloaded_error", "Overloaded")


def slow(reply: Reply, seconds: float) -> Reply:
    return Reply(reply.status, reply.body, reply.headers, seconds)


# --- a scripted "model" that answers from the prompt ------------------------------------------

_BLOCK = re.compile(r'<catalog_data kind="(\w+)"[^>]*>\n(.*?)\n</catalog_data>', re.DOTALL)


def catalog_blocks(body: dict[str, Any]) -> dict[str, list[Any]]:
    """The JSON values inside each ``<catalog_data kind=...>`` block of the first user turn."""
    found: dict[str, list[Any]] = {}
    for block in body["messages"][0]["content"]:
        if block.get("type") != "text":
            continue
        for kind, payload in _BLOCK.findall(block["text"]):
            values = [json.loads(line) for line in payload.splitlines() if line.strip()]
            found.setdefault(kind, []).extend(values)
    return found


def grounded_answer(body: dict[str, Any]) -> Reply:
    """A valid answer built from the data the request carries: the strongest fact, cited."""
    blocks = catalog_blocks(body)
    target = blocks["target"][0]["id"]
    facts = blocks.get("facts", [[]])[0]
    if not facts:
        return tool_answer(f"[[{target}]] is close to what you asked for.", [target])
    fact = facts[0]
    others = [i for i in fact["shared_with"] if i != target]
    if fact["kind"] == "query":
        text = f"[[{target}]] matches {fact['value']} from your search."
    elif others:
        text = (
            f"You liked [[{others[0]}]], and [[{target}]] shares its {fact['kind']}: "
            f"{fact['value']}."
        )
    else:
        text = f"[[{target}]] has the {fact['kind']} {fact['value']} you asked for."
    return tool_answer(text, [target, *others[:1]], [fact["id"]])


# --- search re-ranking (marquee_search.llm_rerank) --------------------------------------------

RANK_TOOL = "rank_candidates"


def tool_call(tool: str, payload: Any, *, delay_s: float = 0.0) -> Reply:
    """A ``tool_use`` answer calling ``tool`` with exactly ``payload`` as its input (any JSON
    value: tests may send what the real API would not, such as a string of broken JSON)."""
    block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": tool}
    block["input"] = payload
    return Reply(body={"content": [block], "stop_reason": "tool_use"}, delay_s=delay_s)


def ranking_answer(
    ranking: list[Any], titles: list[str] | None = None, *, delay_s: float = 0.0
) -> Reply:
    """A re-ranking answer: these ids in this order (and these titles named, when given)."""
    payload: dict[str, Any] = {"ranking": ranking}
    if titles is not None:
        payload["titles"] = titles
    return tool_call(RANK_TOOL, payload, delay_s=delay_s)


def candidate_ids(body: dict[str, Any]) -> list[int]:
    """The candidate ids of a re-ranking request, in the order the request lists them."""
    return [c["id"] for c in catalog_blocks(body).get("candidates", [])]


def reversed_ranking(body: dict[str, Any]) -> Reply:
    """A responder for re-ranking requests: every candidate, in reverse order (an order the
    engine never produces by itself, so a test can tell Claude's order from the engine's)."""
    return ranking_answer(candidate_ids(body)[::-1])


# --- the server -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    body: dict[str, Any]
    headers: dict[str, str]
    """Lower-case header names."""
    at: float
    """``time.monotonic()`` on arrival."""
    status: int
    usage: dict[str, int] | None = None
    """The usage block of the answer (200 only), cache fields included."""


class FakeAnthropic:
    def __init__(self, *, api_key: str = "test-anthropic-key", model: str = DEFAULT_MODEL) -> None:
        self.api_key = api_key
        self.model = model
        self._lock = threading.Lock()
        self._script: list[Reply] = []
        self._cached_prefixes: set[str] = set()
        self.requests: list[RecordedRequest] = []
        self.responder: Callable[[dict[str, Any]], Reply] = grounded_answer
        """Answers every request once the script is used up."""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    def script(self, *replies: Reply) -> None:
        """Queue replies; each request consumes the next one (then ``responder`` answers)."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._cached_prefixes.clear()
            self.requests = []
            self.responder = grounded_answer

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeAnthropic is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._port}"

    def __enter__(self) -> Self:
        # A socket bound here and handed to uvicorn: no race for a "free" port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/v1/messages", self._handle, methods=["POST"])])
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            ws="none",
            access_log=False,
            # Stalled scripted replies must not hold the test run at exit.
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])),
            name="fake-anthropic",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake Anthropic server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._port = 0

    async def _handle(self, request: Request) -> JSONResponse:
        arrived = time.monotonic()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        reply = self._check(headers, body)
        if reply is None:
            assert isinstance(body, dict)
            with self._lock:
                scripted = self._script.pop(0) if self._script else None
            reply = scripted or self.responder(body)
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        payload = dict(reply.body or {})
        if reply.status == 200:
            assert isinstance(body, dict)
            payload = self._message(body, payload)
        else:
            payload.setdefault("request_id", request_id)
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    body if isinstance(body, dict) else {},
                    headers,
                    arrived,
                    reply.status,
                    payload.get("usage"),
                )
            )
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return JSONResponse(
            payload, reply.status, headers={"request-id": request_id, **reply.headers}
        )

    def _check(self, headers: dict[str, str], body: object) -> Reply | None:
        # SDKs send the key as x-api-key (the documented header) or, in newer releases, as a
        # bearer token; the API takes either.
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key not in {headers.get("x-api-key"), bearer}:
            return error(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in headers:
            return error(400, "invalid_request_error", "anthropic-version header is required")
        if not isinstance(body, dict):
            return error(400, "invalid_request_error", "the body must be a JSON object")
        problem = _body_problem(body)
        return None if problem is None else error(400, "invalid_request_error", problem)

    def _message(self, body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        content = reply.get("content", [])
        read, created, total = self._cache_usage(body)
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", self.model),
            "content": content,
            "stop_reason": reply.get("stop_reason", "end_turn"),
            "stop_sequence": None,
            "usage": {
                "input_tokens": max(1, total - read - created),
                "output_tokens": max(1, len(json.dumps(content)) // 4),
                "cache_creation_input_tokens": created,
                "cache_read_input_tokens": read,
            },
        }

    def _cache_usage(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """(cache read, cache created, total) token estimates for this request."""
        parts: list[Any] = [body.get("model"), *body.get("tools", [])]
        system = body.get("system", [])
        parts.extend(system if isinstance(system, list) else [{"type": "text", "text": system}])
        for message in body["messages"]:
            content = message["content"]
            parts.extend(content if isinstance(content, list) else [{"text": content}])
        breakpoints: list[tuple[str, int]] = []
        chars = 0
        digest = hashlib.sha256()
        for part in parts:
            encoded = json.dumps(part, sort_keys=True)
            chars += len(encoded)
            digest.update(encoded.encode())
            if isinstance(part, dict) and part.get("cache_control"):
                breakpoints.append((digest.hexdigest(), chars // 4))
        read = 0
        with self._lock:
            for key, tokens in breakpoints:
                if key in self._cached_prefixes:
                    read = tokens
            created = max((t for _, t in breakpoints), default=0) - read
            self._cached_prefixes.update(key for key, _ in breakpoints)
        return read, max(0, created), chars // 4


def _body_problem(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("model"), str):
        return "model: field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: must be a positive integer"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    tools = {t.get("name") for t in body.get("tools", [])}
    choice = body.get("tool_choice")
    if (
        isinstance(choice, dict)
        and choice.get("type") == "tool"
        and choice.get("name") not in tools
    ):
        return f"tool_choice: tool {choice.get('name')!r} is not defined"
    breakpoints = sum(
        1
        for block in [*body.get("tools", []), *_blocks(body.get("system", []))]
        + [b for m in messages for b in _blocks(m.get("content"))]
        if isinstance(block, dict) and block.get("cache_control")
    )
    if breakpoints > MAX_BREAKPOINTS:
        return f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided"
    expected = "user"
    pending: set[str] = set()
    for i, message in enumerate(messages):
        if message.get("role") != expected:
            return f"messages.{i}.role: roles must alternate, starting with user"
        blocks = _blocks(message.get("content"))
        if expected == "user":
            answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
            if answered - pending:
                return f"messages.{i}: tool_result for an unknown tool_use id"
            if pending - answered:
                return f"messages.{i}: tool_use ids {sorted(pending - answered)} need a tool_result"
            pending = set()
        else:
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
        expected = "assistant" if expected == "user" else "user"
    if messages[-1].get("role") != "user":
        return "the last message must be from the user"
    return None


def _blocks(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)] if isinstance(content, list) else []
