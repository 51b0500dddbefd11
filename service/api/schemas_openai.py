"""Wire schemas of the OpenAI-compatible ``POST /v1/completions`` (OpenAI's legacy
completions API, as vLLM and llama.cpp serve it for base models).

Kept apart from ``schemas.py``: these follow OpenAI's names and defaults (``max_tokens``
16, ``n``, ``echo``, ``stop``) rather than the contract's. Unknown fields are still
rejected; OpenAI fields this server cannot honour (penalties, ``logit_bias``, ``suffix``,
``best_of`` above ``n``) are accepted only at their neutral values, so a client that sends
them explicitly works, and one that relies on them learns so at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP_STRINGS = 4
MAX_LOGPROBS = 20
MAX_N = 16


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(None, description="accepted whatever it names: one model is served")
    prompt: str | Annotated[list[str], Field(min_length=1)] = Field(
        "",
        description="text, or a list of texts (one set of n choices each); token ids are not read",
    )
    max_tokens: int | None = Field(16, ge=0, description="most words per choice; 0: none")
    temperature: float | None = Field(1.0, ge=0.0, le=2.0, description="0 is greedy")
    top_p: float | None = Field(1.0, ge=0.0, le=1.0, description="nucleus mass; 0 is greedy")
    n: int | None = Field(1, ge=1, le=MAX_N, description="choices per prompt")
    stream: bool | None = Field(False, description="Server-Sent Events, then data: [DONE]")
    stream_options: dict[str, bool] | None = Field(
        None, description='{"include_usage": true}: a last chunk with the usage'
    )
    logprobs: int | None = Field(
        None, ge=0, le=MAX_LOGPROBS, description="log-probs and this many alternatives per word"
    )
    echo: bool | None = Field(False, description="the prompt (as the model read it) first")
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_STRINGS)] | None = Field(
        None, description="end a choice before the first of these strings"
    )
    seed: int | None = Field(None, description="same seed, same words")
    user: str | None = Field(None, description="accepted, not used")
    best_of: int | None = Field(None, ge=1, description="only equal to n")
    presence_penalty: float | None = Field(None, description="only 0")
    frequency_penalty: float | None = Field(None, description="only 0")
    logit_bias: dict[str, float] | None = Field(None, description="only empty")
    suffix: str | None = Field(None, description="only null")
    top_k: int | None = Field(None, ge=-1, description="extension (as vLLM): k likeliest; 0/-1 all")
    ignore_eos: bool | None = Field(False, description="extension (as vLLM): go on past <eos>")

    @field_validator("prompt", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        """One clear message instead of pydantic's per-branch ones for the union."""
        if isinstance(value, list):
            if not value:
                raise ValueError("at least one text")
            if not all(isinstance(item, str) for item in value):
                raise ValueError("text or a list of texts (token ids are not read)")
        return value

    @model_validator(mode="after")
    def _neutral_only(self) -> CompletionRequest:
        """OpenAI fields without an effect here must be at their neutral values."""
        if self.best_of is not None and self.best_of != (self.n or 1):
            raise ValueError("best_of: only equal to n is supported")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise ValueError(f"{name}: only 0 is supported")
        if self.logit_bias:
            raise ValueError("logit_bias: not supported")
        if self.suffix:
            raise ValueError("suffix: not supported")
        if self.stream_options and not self.stream:
            raise ValueError("stream_options: only with stream true")
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        if any(not stop for stop in stops):
            raise ValueError("stop: empty strings never match")
        return self

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(description="the model's words")
    token_logprobs: list[float | None] = Field(description="null: the sentence start (echo)")
    top_logprobs: list[dict[str, float] | None] = Field(
        description="the likeliest words and the chosen one, with their log-probs"
    )
    text_offset: list[int] = Field(description="where each word starts in text")


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: Literal["stop", "length"] | None


class CompletionUsage(BaseModel):
    prompt_tokens: int = Field(description="the model's words (not subword tokens)")
    completion_tokens: int
    total_tokens: int


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody


def model_list(card: dict[str, Any], created: int) -> dict[str, Any]:
    """``GET /v1/models``: OpenAI's list (``models.list()`` reads ``data``) with the card
    inside its one item and, as before, at the top level."""
    item = {"object": "model", "created": created, "owned_by": "lstm-serve", **card}
    return {**card, "object": "list", "data": [item]}
