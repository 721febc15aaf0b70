"""Observability for `genlab serve`: Prometheus metrics (one registry per app) and a JSON access log line per
request carrying a request id (the caller's X-Request-ID when it is sane, else a fresh one)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ACCESS_LOG = logging.getLogger("genlab.access")
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("genlab_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("genlab_request_seconds", "Request latency by endpoint", ["endpoint"],
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.in_flight = Gauge("genlab_requests_in_flight", "Requests being served", registry=self.registry)
        self.items = Counter("genlab_generated_items", "Samples generated (table rows and any other kind)",
                             ["model"], registry=self.registry)
        self.images = Counter("genlab_generated_images", "Images generated", ["model"], registry=self.registry)
        self.tokens = Counter("genlab_generated_tokens", "Tokens of text generated", ["model"],
                              registry=self.registry)
        self.characters = Counter("genlab_generated_characters", "Characters of text generated", ["model"],
                                  registry=self.registry)
        self.filtered = Counter("genlab_filtered_samples", "Text samples the output filter redacted or refused",
                                ["action"], registry=self.registry)
        self.batch_requests = Histogram("genlab_batch_requests", "Requests served by one micro-batch",
                                        buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.queue_depth = Gauge("genlab_queue_depth", "Image requests waiting for a micro-batch",
                                 registry=self.registry)
        self.rejections = Counter("genlab_rejections", "Requests refused, by reason", ["reason"],
                                  registry=self.registry)


REJECTION_REASONS = {401: "auth", 404: "unknown_model", 413: "too_large", 422: "invalid", 429: "rate_limit",
                     400: "bad_request"}


class AccessLog:
    """ASGI middleware: request id, latency, status -> metrics and one JSON log line."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SANE_ID.match(given) else uuid.uuid4().hex
        start, status = time.perf_counter(), [500]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                   (b"x-request-id", request_id.encode())]}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - start
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(seconds)
            if status[0] in REJECTION_REASONS:
                self.metrics.rejections.labels(REJECTION_REASONS[status[0]]).inc()
            ACCESS_LOG.info(json.dumps({"request_id": request_id, "method": scope.get("method"),
                                        "path": scope.get("path"), "endpoint": endpoint, "status": status[0],
                                        "ms": round(seconds * 1000, 2)}))
