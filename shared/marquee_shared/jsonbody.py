"""JSON request bodies held to RFC 8259, and 422 answers that can always be written.

Python's ``json`` module reads what JSON does not allow: ``NaN``, ``Infinity``, numbers too
large for a float (``1e999`` becomes infinity) and lone UTF-16 surrogates (``"\\ud800"``).
Inside a request they break whatever serialises them next (the 422 handler echoing them back,
httpx forwarding them, a stream entry) with a 500 and a reset connection. Routers built with
``route_class=StrictJSONRoute`` refuse them while parsing the body, as FastAPI refuses malformed
JSON (422 ``json_invalid``, the reason in ``msg``); ``install_validation_errors`` makes every
422 body serialisable whatever the input held (bytes, non-finite floats, surrogates).

For the FastAPI services only (gateway, search, explainer, ingest), each of which depends on
FastAPI itself.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any, NoReturn

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.requests import Request

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from fastapi import FastAPI
    from starlette.responses import Response

_STRING = r'"(?:[^"\\]|\\.)*"'
# A lone surrogate escape: a high one not followed by a low one, or a low one not preceded by a
# high one; and the backslash must be a real escape, not the second half of an escaped "\\".
_LONE_SURROGATE = re.compile(
    r"(?<!\\)(?:\\\\)*"
    r"(\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)


def _offset(doc: str, token: str) -> int:
    """Where ``token`` (a number or constant) first appears outside string literals."""
    pattern = re.compile(f"{_STRING}|(?<![\\w.+-])({re.escape(token)})(?![\\w.])")
    return next((m.start(1) for m in pattern.finditer(doc) if m.group(1)), 0)


def loads_strict(body: bytes | str) -> Any:
    """``json.loads`` that raises ``json.JSONDecodeError`` on what RFC 8259 does not allow.

    Not UTF-8 (or UTF-16/32, which ``json`` also detects) raises ``UnicodeDecodeError``, as
    ``json.loads`` does: FastAPI answers it with 400.
    """
    doc = body if isinstance(body, str) else body.decode(json.detect_encoding(body))

    def constant(name: str) -> NoReturn:
        msg = f"{name} is not a JSON number (JSON has no NaN or infinities)"
        raise json.JSONDecodeError(msg, doc, _offset(doc, name))

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            msg = f"{text} is too large for a number (it would be infinite)"
            raise json.JSONDecodeError(msg, doc, _offset(doc, text))
        return value

    value = json.loads(doc, parse_constant=constant, parse_float=number)
    if (found := _lone_surrogate(value)) is not None:
        path, char = found
        where = f" in {path}" if path else ""
        msg = f"\\u{ord(char):04x}{where} is a lone surrogate, not a character"
        match = _LONE_SURROGATE.search(doc)
        raise json.JSONDecodeError(msg, doc, match.start(1) if match else 0)
    return value


def _lone_surrogate(value: Any) -> tuple[str, str] | None:
    """The path and character of the first string (or key) holding a lone surrogate."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if (char := _surrogate_in(item)) is not None:
                return path, char
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                if (char := _surrogate_in(key)) is not None:
                    return path, char
                stack.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in reversed(list(enumerate(item))))
    return None


def _surrogate_in(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return text[exc.start]
    return None


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body is parsed by ``loads_strict`` (FastAPI's "custom request and
    APIRoute class": https://fastapi.tiangolo.com/how-to/custom-request-and-route/)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def printable(value: Any) -> Any:
    """``value`` with everything JSON cannot carry made printable: bytes decoded (invalid
    sequences replaced), non-finite floats as text, lone surrogates as ``\\udXXX`` escapes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return (
            value
            if _surrogate_in(value) is None
            else value.encode(errors="backslashreplace").decode()
        )
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


async def validation_error_response(_: Request, exc: Exception) -> Response:
    """FastAPI's 422 answer, written so that any input can be echoed back."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = jsonable_encoder(printable(list(errors)))
    for error in detail:
        # FastAPI says only "JSON decode error"; the reason is in ctx, where clients look less.
        reason = (error.get("ctx") or {}).get("error")
        if error.get("type") == "json_invalid" and isinstance(reason, str):
            error["msg"] = f"JSON decode error: {reason}"
    return JSONResponse({"detail": detail}, status_code=422)


def install_validation_errors(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error_response)
