"""Wire schemas of ../shared/API.md, in one place. Strict: a bool is not an int, a number
is not a string, unknown fields are rejected. Descriptions become the OpenAPI docs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SEED = 2**63 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


TextField = Annotated[str, Field(description="raw text; normalised by the model's rules")]
KField = Annotated[int, Field(ge=1, description="how many predictions (at most LSTM_SERVE_MAX_K)")]
ExcludeSpecial = Annotated[bool, Field(description="leave <unk> and <eos> out of predictions")]


class PredictRequest(Strict):
    text: TextField = ""
    k: KField = 5
    exclude_special: ExcludeSpecial = False


class ScoreRequest(Strict):
    text: TextField = ""


class SamplingFields(Strict):
    max_tokens: int = Field(20, ge=0, description="most words to generate")
    temperature: float = Field(1.0, ge=0.0, le=100.0, description="0 is greedy")
    top_k: int = Field(
        0, ge=0, le=1_000_000, description="sample among the k likeliest words; 0: all"
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass; 1: all")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="same seed, same words")
    stop_at_eos: bool = Field(True, description="end at the first <eos>")


class GenerateRequest(SamplingFields):
    text: TextField = ""
    stream: bool = Field(False, description="answer with Server-Sent Events, one per word")


class CreateSessionRequest(Strict):
    text: TextField = ""
    k: KField = 5
    exclude_special: ExcludeSpecial = False
    state: str | None = Field(
        None,
        max_length=1_000_000,
        description="a token from GET /v1/sessions/{id}/state: the new session starts from "
        "that state and position (then text must be empty)",
    )
    cache: bool | None = Field(
        None,
        description="keep a continuous cache of the session's recent words (Grave et al. "
        "2016): its logprobs and predictions come from the mixture; absent: the server's "
        "LSTM_SERVE_SESSION_CACHE setting",
    )


class ForkRequest(Strict):
    k: KField = 5
    exclude_special: ExcludeSpecial = False


class RewindRequest(Strict):
    tokens: int = Field(ge=0, le=1_000_000, description="how many of the latest tokens to undo")
    k: KField = 5
    exclude_special: ExcludeSpecial = False


class FeedRequest(Strict):
    text: TextField
    k: KField = 5
    exclude_special: ExcludeSpecial = False


class PredictionItem(BaseModel):
    word: str
    probability: float
    logprob: float


class PredictResponse(BaseModel):
    model: str
    tokens: list[str]
    predictions: list[PredictionItem]


class ScoreResponse(BaseModel):
    model: str
    tokens: list[str]
    token_logprobs: list[float]
    logprob: float
    perplexity: float | None = Field(description="exp(-mean log-prob); null for empty text")


class GenerateResponse(BaseModel):
    model: str
    prompt_tokens: list[str]
    tokens: list[str]
    text: str
    finish_reason: Literal["length", "eos"]


class SessionStepResponse(BaseModel):
    session_id: str
    position: int
    tokens: list[str]
    predictions: list[PredictionItem]


class FeedResponse(SessionStepResponse):
    logprob: float = Field(description="summed log-prob of the fed tokens given the history")


class StateResponse(BaseModel):
    state: str = Field(description="opaque signed token: POST /v1/sessions {state} takes it")
    position: int


class SessionInfoResponse(BaseModel):
    session_id: str
    position: int
    created_at: str = Field(description="RFC 3339 UTC")
    last_used_at: str
    expires_at: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class HealthResponse(BaseModel):
    status: str
    reason: str | None = None


# ---- WebSocket client messages -------------------------------------------------------
MessageId = Annotated[str | int | None, Field(description="echoed in every answer")]


class WsFeed(Strict):
    type: Literal["feed"]
    text: str
    k: KField = 5
    exclude_special: ExcludeSpecial = False
    id: MessageId = None


class WsGenerate(SamplingFields):
    type: Literal["generate"]
    id: MessageId = None


class WsCancel(Strict):
    type: Literal["cancel"]
    id: MessageId = None


class WsReset(Strict):
    type: Literal["reset"]
    id: MessageId = None


class WsFork(Strict):
    type: Literal["fork"]
    id: MessageId = None


class WsRewind(Strict):
    type: Literal["rewind"]
    tokens: int = Field(ge=0, le=1_000_000, description="how many of the latest tokens to undo")
    k: KField = 5
    exclude_special: ExcludeSpecial = False
    id: MessageId = None


class WsClose(Strict):
    type: Literal["close"]
    id: MessageId = None


WsMessage = Annotated[
    WsFeed | WsGenerate | WsCancel | WsReset | WsFork | WsRewind | WsClose,
    Field(discriminator="type"),
]
