"""ASGI middleware in front of the service: routes, auth, body size, and strict JSON, before BentoML.

- A path the service does not serve gets 404 here.
- With ``CHURN_API_TOKEN`` set, every path except health, readiness and metrics needs
  ``Authorization: Bearer <token>`` (else 401).
- A prediction request must be a POST with ``Content-Type: application/json`` (else 405 / 415), a
  body of at most ``max_body`` bytes whether it declares a Content-Length or streams in chunks
  (else 413), and one JSON object without duplicate keys, NaN or Infinity (else 400). The body is
  parsed here once to check it, and handed on unchanged.

- ``/docs.json`` (what Swagger at ``/`` reads) is the service's own OpenAPI document when one is
  given (``openapi``), else BentoML's.

Every refusal, here or in the service, is an RFC 9457 problem document
(``application/problem+json``: type, title, status, detail) logged at INFO in one line.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from bentos.metrics import metrics

log = logging.getLogger("churn.service")

OPEN_PATHS = frozenset({"/health", "/healthz", "/livez", "/readyz", "/metrics"})
API_PATHS = frozenset({"/predict", "/predict_batch", "/predict_by_id"})
PAGES = frozenset({"/", "/docs.json", "/metadata", "/favicon.ico"})
ASSETS = "/static_content/"  # Swagger UI's files


def route(path: str) -> str:
    """A path as a metrics label: one the service serves, or "other"."""
    return path if path in API_PATHS or path in OPEN_PATHS or path in PAGES else "other"


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def problem(status: int, detail: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The body and headers of a problem document (RFC 9457)."""
    body = json.dumps(
        {
            "type": "about:blank",
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
        }
    ).encode()
    return body, [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]


async def answer(
    send: Send, status: int, detail: str, path: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    log.info("%s %s: %s", status, path, detail)
    body, headers = problem(status, detail)
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object hook that refuses duplicate keys (a client's later value would silently win)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:60]!r}")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_json(body: bytes) -> str | None:
    """Why ``body`` is not one strict JSON object, or None."""
    try:
        parsed = json.loads(body, object_pairs_hook=_pairs, parse_constant=_constant)
    except RecursionError:
        return "body: nested too deeply"
    except UnicodeDecodeError:
        return "body: not UTF-8 text"
    except (
        ValueError
    ) as exc:  # JSONDecodeError is a ValueError; so are our hooks' and int()'s digit limit
        return f"body: not valid JSON ({str(exc)[:120]})"
    if not isinstance(parsed, dict):
        return f"body: expected a JSON object, got {type(parsed).__name__}"
    return None


class Guard:
    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        token: str | None = None,
        max_body: int = 2 * 1024 * 1024,
        max_batch: int = 5000,
        openapi: Callable[[], bytes] | None = None,
    ):
        self.app = app
        self.openapi = openapi
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body = max_body
        # a valid body holds at most two objects per row and a few dozen values per row: a body of
        # a million empty rows is refused by counting bytes, before any parser allocates them
        self.max_objects = 2 * max_batch + 16
        self.max_values = 64 * max_batch + 64

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every HTTP request, counted by route (a made-up path counts as "other") and status."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        started = time.perf_counter()

        async def counted(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, counted)
        finally:
            seconds = time.perf_counter() - started
            label = route(scope["path"])
            metrics().requests.labels(label, str(status)).inc()
            metrics().latency.labels(label).observe(seconds)

    async def _document(
        self, scope: Scope, receive: Receive, send: Send, build: Callable[[], bytes]
    ) -> None:
        """The service's OpenAPI document; if it cannot be built, BentoML's (and the log says why)."""
        try:
            body = build()
        except Exception:
            log.exception("could not build the OpenAPI document; serving BentoML's")
            return await self.app(scope, receive, send)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        headers = dict(scope.get("headers") or [])
        if not (
            path in API_PATHS or path in OPEN_PATHS or path in PAGES or path.startswith(ASSETS)
        ):
            return await answer(send, 404, f"no such path: {path[:80]}", path[:80])
        if (
            self.expected is not None
            and path not in OPEN_PATHS
            and not hmac.compare_digest(headers.get(b"authorization", b""), self.expected)
        ):
            return await answer(
                send,
                401,
                "missing or invalid bearer token",
                path,
                [(b"www-authenticate", b"Bearer")],
            )
        if path == "/docs.json" and self.openapi is not None and scope["method"] == "GET":
            return await self._document(scope, receive, send, self.openapi)
        if path not in API_PATHS:
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            return await answer(send, 405, f"{path} takes POST", path, [(b"allow", b"POST")])
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != b"application/json":
            shown = media.decode("latin-1")[:60] or "none"
            return await answer(
                send, 415, f"Content-Type must be application/json, got {shown}", path
            )
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return await answer(
                send,
                413,
                f"request body of {int(declared)} bytes exceeds the limit of {self.max_body}",
                path,
            )
        chunks, seen = [], 0
        while True:  # read the whole body (it is bounded), chunked or not
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_body:
                return await answer(
                    send, 413, f"request body exceeds the limit of {self.max_body} bytes", path
                )
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body.count(b"{") > self.max_objects or body.count(b",") > self.max_values:
            return await answer(
                send,
                413,
                f"body: too many values for at most {(self.max_objects - 16) // 2} rows",
                path,
            )
        wrong = check_json(body)
        if wrong is not None:
            return await answer(send, 400, wrong, path)
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)
