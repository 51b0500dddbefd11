"""A Python client of lstm-serve (httpx for HTTP, websockets for ``/v1/stream``).

```python
from lstm_serve.client import Client

with Client("http://127.0.0.1:8000") as client:
    print(client.predict("the clouds are in the", k=3).predictions)
    with client.session("the company said") as s:  # deleted on exit
        step = s.feed("it expects")
    with client.stream() as stream:  # WebSocket session, deleted on exit
        stream.feed("the market")
        for event in stream.generate(max_tokens=5, temperature=0):
            print(event)
```

Every error answer raises the subclass of :class:`APIError` for its code; ``429
overloaded`` is retried after ``Retry-After`` (see :class:`RetryPolicy`). See
docs/CLIENT.md.
"""

from lstm_serve.client.async_client import AsyncClient, AsyncSession
from lstm_serve.client.errors import (
    ERRORS,
    APIError,
    ClientError,
    InvalidRequest,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    SessionBusy,
    SessionIncompatible,
    SessionNotFound,
    StreamClosed,
    Timeout,
    Unauthorized,
)
from lstm_serve.client.results import (
    GeneratedWord,
    Generation,
    Prediction,
    Predictions,
    Score,
    SessionInfo,
    SessionStep,
    StreamDone,
    StreamToken,
)
from lstm_serve.client.streams import AsyncStream, Stream
from lstm_serve.client.sync_client import Client, Session
from lstm_serve.client.transport import RetryPolicy
from models.detokenize import detokenize

__all__ = [
    "ERRORS",
    "APIError",
    "AsyncClient",
    "AsyncSession",
    "AsyncStream",
    "Client",
    "ClientError",
    "GeneratedWord",
    "Generation",
    "InvalidRequest",
    "NotReady",
    "Overloaded",
    "PayloadTooLarge",
    "Prediction",
    "Predictions",
    "RetryPolicy",
    "Score",
    "Session",
    "SessionBusy",
    "SessionIncompatible",
    "SessionInfo",
    "SessionNotFound",
    "SessionStep",
    "Stream",
    "StreamClosed",
    "StreamDone",
    "StreamToken",
    "Timeout",
    "Unauthorized",
    "detokenize",
]
