"""W3C trace context on outgoing calls.

When the OpenTelemetry API is installed (`pip install "sessiond-client[otel]"`,
or any `opentelemetry-api` the application already has), every call carries the
caller's current span as `traceparent` (and `tracestate`), so sessiond's span of
the call, exported when sessiond runs with `--otlp-endpoint`, is a child of the
caller's. Without the API, or outside any span, the metadata is left as it is.
"""

from __future__ import annotations

from typing import Sequence, Tuple

try:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the API is optional
    TraceContextTextMapPropagator = None  # type: ignore[assignment,misc]

Metadata = Sequence[Tuple[str, str]]

# Only the W3C trace context: sessiond reads nothing else, and baggage may hold
# what the application does not mean to send.
_propagator = TraceContextTextMapPropagator() if TraceContextTextMapPropagator is not None else None


def with_context(metadata: Tuple[Tuple[str, str], ...]) -> Tuple[Tuple[str, str], ...]:
    """`metadata` plus the current trace context, if there is one."""
    if _propagator is None:
        return metadata
    carrier: dict = {}
    _propagator.inject(carrier)
    if not carrier:
        return metadata
    return metadata + tuple((k, v) for k, v in carrier.items())
