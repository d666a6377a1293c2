"""Calls carry the caller's OpenTelemetry trace context (`traceparent`,
`tracestate`) when the API is installed, read from the metadata each call
really sends (a client interceptor on the channel) to a real sessiond."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import TraceFlags, TraceState

import sessiond

# A provider of the test's own: the global one is left alone.
tracer = TracerProvider().get_tracer("sessiond-client-tests")


class Recorder(grpc.UnaryUnaryClientInterceptor):
    """The metadata of every call made on its channel."""

    def __init__(self) -> None:
        self.sent = []

    def intercept_unary_unary(self, continuation, details, request):
        self.sent.append(dict(details.metadata or ()))
        return continuation(details, request)


class AsyncRecorder(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self) -> None:
        self.sent = []

    async def intercept_unary_unary(self, continuation, details, request):
        self.sent.append(dict(details.metadata or ()))
        return await continuation(details, request)


def traceparent(span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def test_calls_in_a_span_carry_it_and_others_do_not(server, sid):
    rec = Recorder()
    channel = grpc.intercept_channel(grpc.insecure_channel(server.target), rec)
    with sessiond.Client(server.target, channel=channel, metadata=[("x-request-id", "r1")]) as c:
        c.update(sid, {"n": b"1"})
        with tracer.start_as_current_span("turn") as turn:
            assert c.get(sid, consistency="strong").fields == {"n": b"1"}
            with tracer.start_as_current_span("inner") as inner:
                c.get(sid)
    channel.close()
    outside, in_turn, in_inner = rec.sent
    assert "traceparent" not in outside and outside["x-request-id"] == "r1"
    assert in_turn["traceparent"] == traceparent(turn)
    assert in_turn["x-request-id"] == "r1", "the caller's metadata is kept"
    assert in_inner["traceparent"] == traceparent(inner)
    assert turn.get_span_context().trace_id == inner.get_span_context().trace_id


def test_tracestate_goes_with_it(server, sid):
    rec = Recorder()
    channel = grpc.intercept_channel(grpc.insecure_channel(server.target), rec)
    parent = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
            span_id=0x00F067AA0BA902B7,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=TraceState([("vendor", "opaque")]),
        )
    )
    with sessiond.Client(server.target, channel=channel) as c:
        with trace.use_span(parent):
            assert c.get_or_none(sid) is None
    channel.close()
    (sent,) = rec.sent
    assert sent["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert sent["tracestate"] == "vendor=opaque"


def test_the_async_client_sends_the_current_span(server, sid):
    async def main():
        rec = AsyncRecorder()
        channel = grpc.aio.insecure_channel(server.target, interceptors=[rec])
        async with sessiond.AsyncClient(server.target, channel=channel) as c:
            with tracer.start_as_current_span("turn") as turn:
                await c.update(sid, {"n": b"1"})
        await channel.close()
        (sent,) = rec.sent
        assert sent["traceparent"] == traceparent(turn)

    asyncio.run(main())


def test_without_the_api_calls_go_out_unchanged(server, sid):
    # A fresh interpreter where `import opentelemetry` fails, as it does when
    # the optional package is not installed.
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["opentelemetry"] = None
        import grpc
        import sessiond, sessiond._trace
        assert sessiond._trace._propagator is None
        sent = []
        class Recorder(grpc.UnaryUnaryClientInterceptor):
            def intercept_unary_unary(self, continuation, details, request):
                sent.append(dict(details.metadata or ()))
                return continuation(details, request)
        channel = grpc.intercept_channel(grpc.insecure_channel({server.target!r}), Recorder())
        with sessiond.Client({server.target!r}, channel=channel) as c:
            c.update({sid!r}, {{"n": b"1"}})
            assert c.get({sid!r}, consistency="strong").version == 1
        assert all("traceparent" not in m for m in sent), sent
        print("ok", len(sent))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "2"]
