"""chatplatform.tracing: off unless asked, a no-op API when off, and what the sampler keeps."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from chatplatform import tracing


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_traces_are_wanted_only_when_an_endpoint_is_set(environ, expected):
    assert tracing.wanted(environ) is expected


def test_off_by_default_the_api_does_nothing():
    assert not tracing.enabled()  # the test environment names no collector
    with tracing.span("chat.anything", message_id="m1") as span:
        span.set_attribute("chat.ttft_ms", 5)
        assert span is tracing.NO_SPAN and not span.is_recording()
    tracing.set_attributes(request_id="r1")
    assert tracing.current_ids() is None
    assert tracing.add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}


def test_an_exception_in_a_span_block_still_propagates_when_off():
    with pytest.raises(ValueError), tracing.span("chat.failing"):
        raise ValueError("kept")


def test_the_sampler_drops_bare_client_calls_but_keeps_them_inside_a_trace():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing._sampler())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("BZPOPMIN", kind=SpanKind.CLIENT):
        pass  # the channel layer's poll, outside any request
    with (
        tracer.start_as_current_span("GET /c/", kind=SpanKind.SERVER),
        tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT),
    ):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["SELECT", "GET /c/"]


def test_attributes_are_namespaced_and_made_plain():
    import uuid

    message_id = uuid.uuid4()
    assert tracing._attributes(
        {"message_id": message_id, "ttft_ms": 12, "skip": None}, {"gen_ai.request.model": "m"}
    ) == {
        "chat.message_id": str(message_id),
        "chat.ttft_ms": 12,
        "gen_ai.request.model": "m",
    }
