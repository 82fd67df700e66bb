"""The service's Prometheus metrics, with bounded labels: a route is one the service serves or
"other", so no client can grow /metrics by calling made-up paths. BentoML's own request metrics
label every path they see: ``bound_bentoml_metrics`` keeps made-up paths out of them.

The metrics are created on first use in each worker: BentoML sets ``PROMETHEUS_MULTIPROC_DIR``
after importing the service, and prometheus_client must see it to aggregate across workers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metrics:
    requests: Any
    latency: Any
    predictions: Any
    model: Any


@functools.cache
def metrics() -> Metrics:
    import prometheus_client as prometheus

    return Metrics(
        requests=prometheus.Counter(
            "churn_http_requests", "HTTP requests by route and status", ["route", "status"]
        ),
        latency=prometheus.Histogram(
            "churn_http_request_seconds", "request time by route", ["route"]
        ),
        predictions=prometheus.Counter(
            "churn_predictions",
            "answered predictions by model version and class",
            ["model_version", "prediction"],
        ),
        model=prometheus.Gauge(
            "churn_model_info",
            "workers serving each packaged model (summed over the live workers)",
            ["model_name", "model_version", "bento_model"],
            multiprocess_mode="livesum",
        ),
    )


def bound_bentoml_metrics() -> None:
    """BentoML's traffic-metrics middleware (bentoml 1.4, pinned) makes one label per request path,
    so 2,000 made-up paths grew /metrics by 17 MB: let it see only the service's own routes (the
    guard answers and counts the rest as "other"). A test fails if BentoML changes under it."""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    from bentos.guard import route

    measured = RunnerTrafficMetricsMiddleware.__call__
    if getattr(measured, "bounded", False):
        return

    async def bounded(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and route(scope["path"]) == "other":
            return await self.app(scope, receive, send)
        return await measured(self, scope, receive, send)

    bounded.bounded = True  # type: ignore[attr-defined]
    RunnerTrafficMetricsMiddleware.__call__ = bounded  # type: ignore[method-assign]
