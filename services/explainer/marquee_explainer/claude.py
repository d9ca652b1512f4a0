"""Explanations written by Claude through the official SDK: one call, validated; one retry
with the problems stated; then the caller falls back to the deterministic explainer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anthropic
import structlog
from prometheus_client import Counter

from marquee_explainer.prompt import TOOL_NAME, request_params, retry_messages
from marquee_explainer.validation import Draft, Verdict, validate

if TYPE_CHECKING:
    from anthropic.types import Message

    from marquee_explainer.context import ExplainContext
    from marquee_explainer.titles import TitleIndex

log = structlog.get_logger(__name__)

FailureReason = Literal["llm_error", "llm_timeout", "llm_invalid"]

LLM_CALLS = Counter(
    "marquee_explainer_llm_calls_total",
    "Messages API calls by outcome (valid, invalid, error, timeout)",
    ["outcome"],
)
LLM_TOKENS = Counter(
    "marquee_explainer_llm_tokens_total",
    "Tokens reported by the Messages API, by kind",
    ["kind"],
)


@dataclass(frozen=True)
class Written:
    verdict: Verdict | None
    """The valid answer; None when Claude did not produce one."""
    attempts: int
    failure: FailureReason | None = None
    problems: list[str] = field(default_factory=list)


class ClaudeWriter:
    def __init__(
        self, client: anthropic.AsyncAnthropic, *, model: str, max_tokens: int, deadline_s: float
    ) -> None:
        self._client = client
        self.model = model
        self._max_tokens = max_tokens
        self._deadline_s = deadline_s

    async def write(self, ctx: ExplainContext, index: TitleIndex) -> Written:
        params = request_params(ctx, model=self.model, max_tokens=self._max_tokens)
        attempts = 0
        try:
            async with asyncio.timeout(self._deadline_s):
                attempts += 1
                verdict, content = await self._attempt(params, ctx, index, attempts)
                if verdict.ok:
                    return Written(verdict, attempts)
                log.info("llm_answer_rejected", attempt=attempts, problems=verdict.problems)
                retry = {**params, "messages": retry_messages(params, content, verdict.problems)}
                attempts += 1
                verdict, _ = await self._attempt(retry, ctx, index, attempts)
                if verdict.ok:
                    return Written(verdict, attempts)
                log.info("llm_answer_rejected", attempt=attempts, problems=verdict.problems)
                return Written(None, attempts, "llm_invalid", verdict.problems)
        except (TimeoutError, anthropic.APITimeoutError) as exc:
            LLM_CALLS.labels("timeout").inc()
            log.warning("llm_timeout", attempts=attempts, error=type(exc).__name__)
            return Written(None, attempts, "llm_timeout", [f"{type(exc).__name__}"])
        except anthropic.AnthropicError as exc:
            LLM_CALLS.labels("error").inc()
            status = getattr(exc, "status_code", None)
            log.warning("llm_error", attempts=attempts, status=status, error=str(exc)[:300])
            return Written(None, attempts, "llm_error", [f"{type(exc).__name__}: {exc}"[:300]])

    async def _attempt(
        self, params: dict[str, Any], ctx: ExplainContext, index: TitleIndex, attempt: int
    ) -> tuple[Verdict, list[dict[str, Any]]]:
        started = time.perf_counter()
        message = await self._client.messages.create(
            model=params["model"],
            max_tokens=params["max_tokens"],
            system=params["system"],
            tools=params["tools"],
            tool_choice=params["tool_choice"],
            messages=params["messages"],
        )
        _count_usage(message, attempt, time.perf_counter() - started)
        draft, problems = parse(message)
        verdict = validate(draft, ctx, index)
        if problems:
            merged = list(dict.fromkeys([*problems, *verdict.problems]))
            verdict = Verdict(verdict.text, verdict.cited_ids, verdict.facts, merged)
        LLM_CALLS.labels("valid" if verdict.ok else "invalid").inc()
        return verdict, [block.to_dict() for block in message.content]


def parse(message: Message) -> tuple[Draft, list[str]]:
    """The draft in the tool call, and what is malformed about it (empty when nothing)."""
    call = next((b for b in message.content if b.type == "tool_use" and b.name == TOOL_NAME), None)
    if call is None:
        reason = f"stop_reason {message.stop_reason}"
        return Draft(""), [f"there was no {TOOL_NAME} call ({reason})"]
    data: dict[str, Any] = dict(call.input)
    text = data.get("text")
    cited = data.get("cited_ids", [])
    refs = data.get("fact_ids", [])
    problems = []
    if not isinstance(text, str):
        problems.append("text must be a string")
        text = ""
    if not isinstance(cited, list) or not all(isinstance(i, int) for i in cited):
        problems.append("cited_ids must be a list of integer movie ids")
        cited = []
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        problems.append("fact_ids must be a list of fact ids such as F1")
        refs = []
    return Draft(text, cited, refs), problems


def _count_usage(message: Message, attempt: int, seconds: float) -> None:
    usage = message.usage
    counts = {
        "input": usage.input_tokens,
        "output": usage.output_tokens,
        "cache_read": usage.cache_read_input_tokens or 0,
        "cache_creation": usage.cache_creation_input_tokens or 0,
    }
    for kind, n in counts.items():
        LLM_TOKENS.labels(kind).inc(n)
    log.info(
        "llm_call",
        attempt=attempt,
        model=message.model,
        stop_reason=message.stop_reason,
        duration_ms=round(seconds * 1000, 1),
        **{f"{k}_tokens": v for k, v in counts.items()},
    )
