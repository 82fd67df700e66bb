"""ASGI middleware in front of the service: bearer-token auth and a request-body size limit.

With ``CHURN_API_TOKEN`` set, every path except health, readiness and metrics needs
``Authorization: Bearer <token>`` (else 401). Bodies over ``max_body`` bytes get 413, whether they
declare a Content-Length or stream in chunks; the model never sees them.
"""

from __future__ import annotations

import hmac
import json

OPEN_PATHS = frozenset({"/health", "/healthz", "/livez", "/readyz", "/metrics"})


async def _answer(send, status: int, message: str, extra_headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers + (extra_headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app, token: str | None = None, max_body: int = 2 * 1024 * 1024):
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if (
            self.expected is not None
            and scope["path"] not in OPEN_PATHS
            and not hmac.compare_digest(headers.get(b"authorization", b""), self.expected)
        ):
            return await _answer(
                send, 401, "missing or invalid bearer token", [(b"www-authenticate", b"Bearer")]
            )
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return await _answer(
                send,
                413,
                f"request body of {int(declared)} bytes exceeds the limit of {self.max_body}",
            )

        if declared is not None:
            return await self.app(scope, receive, send)
        # no Content-Length (chunked): buffer up to the limit, refuse past it, then replay the body
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_body:
                return await _answer(
                    send, 413, f"request body exceeds the limit of {self.max_body} bytes"
                )
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
