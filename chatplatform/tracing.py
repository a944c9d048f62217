"""OpenTelemetry traces: off unless an OTLP endpoint is configured, and one small API for our own spans.

`configure()` runs once per process (ops.apps.OpsConfig.ready). When
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
set and `OTEL_SDK_DISABLED` is not, it installs the SDK with a batching
OTLP/HTTP exporter (which reads the standard `OTEL_EXPORTER_OTLP_*`
variables itself: headers, timeout, compression) and instruments Django
(one server span per HTTP request), psycopg (each query), redis (each
command), httpx2, the OpenAI SDK's HTTP client (the model list; OpenTelemetry's
httpx instrumentation does not see that package), and through `client_request`
the reply reader's own requests. Our own code adds spans with

    with tracing.span("chat.generation", conversation_id=..., message_id=...) as span:
        span.set_attribute("chat.ttft_ms", 41)

Keyword attributes are namespaced `chat.<name>`; `attributes={...}` passes
names as they are (e.g. `gen_ai.request.model`). Off, `span()` yields a
shared do-nothing span and costs one boolean test.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import structlog

log = structlog.get_logger(__name__)

_enabled = False
_tracer = None


class _NoSpan:
    """What `span()` yields when tracing is off: every method a span offers, doing nothing."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        pass

    def record_exception(self, exception: BaseException, *args: Any, **kwargs: Any) -> None:
        pass

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        pass

    def is_recording(self) -> bool:
        return False


NO_SPAN = _NoSpan()


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces (the standard OTEL_* variables)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def enabled() -> bool:
    return _enabled


def _sampler():
    """Every trace that starts at a request, a socket frame or a reply; never one that
    would start at a bare database or Redis call (the channel layer's receive loop
    polls Redis forever, and each poll would be a trace of its own)."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    class NoOrphanClientSpans(Sampler):
        def should_sample(
            self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None
        ):
            if kind == SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return ALWAYS_ON.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return "NoOrphanClientSpans"

    return ParentBased(root=NoOrphanClientSpans())


def configure(*, app_env: str, service_name: str = "chatplatform") -> bool:
    """Install the SDK, the exporter and the instrumentations when the environment asks
    for traces; idempotent. True when traces are on."""
    global _enabled, _tracer
    if _enabled or not wanted():
        return _enabled
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over these defaults.
    resource = Resource.create({"service.name": service_name, "deployment.environment.name": app_env})
    provider = TracerProvider(resource=resource, sampler=_sampler())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument(tracer_provider=provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    _tracer = trace.get_tracer("chatplatform")
    _instrument_httpx2(_tracer)
    _enabled = True
    log.info("tracing_configured", service_name=resource.attributes.get("service.name"))
    return True


def traced_cursor(cursor_class: type) -> type:
    """`cursor_class` (a psycopg cursor class, sync or async, the app makes cursors of itself,
    not the connection's own) with each query a CLIENT span, as the psycopg instrumentation
    makes the connection's cursors when traces are on (conversations/statements.py)."""
    if not _enabled:
        return cursor_class
    traced = _TRACED_CURSORS.get(cursor_class)
    if traced is None:
        import psycopg
        from opentelemetry import trace
        from opentelemetry.instrumentation.psycopg import _new_cursor_async_factory, _new_cursor_factory

        # The instrumentation's own wrapper (what it gives every connection's cursor factory).
        factory = (
            _new_cursor_async_factory
            if issubclass(cursor_class, psycopg.AsyncCursor)
            else _new_cursor_factory
        )
        traced = _TRACED_CURSORS[cursor_class] = factory(
            base_factory=cursor_class, tracer_provider=trace.get_tracer_provider()
        )
    return traced


_TRACED_CURSORS: dict[type, type] = {}


def _instrument_httpx2(tracer) -> None:
    """A CLIENT span per request of httpx2 (the provider's HTTP client), from sending it to
    the response's head (a streamed body goes on inside the reply's span), with the
    trace context sent along in `traceparent` for a provider that traces too."""
    try:
        import httpx2
    except ImportError:  # no OpenAI-compatible provider installed
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    def attributes(request) -> dict[str, Any]:
        url = request.url
        return _client_attributes(request.method, url.scheme, url.host, url.port, url.path)

    send_async = httpx2.AsyncHTTPTransport.handle_async_request
    send_sync = httpx2.HTTPTransport.handle_request
    if getattr(send_async, "chat_traced", False):
        return

    async def handle_async_request(self, request):
        with tracer.start_as_current_span(
            request.method, kind=SpanKind.CLIENT, attributes=attributes(request)
        ) as span:
            propagate.inject(request.headers)
            response = await send_async(self, request)
            response_status(span, response.status_code)
            return response

    def handle_request(self, request):
        with tracer.start_as_current_span(
            request.method, kind=SpanKind.CLIENT, attributes=attributes(request)
        ) as span:
            propagate.inject(request.headers)
            response = send_sync(self, request)
            response_status(span, response.status_code)
            return response

    handle_async_request.chat_traced = True
    httpx2.AsyncHTTPTransport.handle_async_request = handle_async_request
    httpx2.HTTPTransport.handle_request = handle_request


def _attributes(names: Mapping[str, Any], exact: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = {f"chat.{key}": value for key, value in names.items() if value is not None}
    merged.update({key: value for key, value in (exact or {}).items() if value is not None})
    return {key: _plain(value) for key, value in merged.items()}


def _plain(value: Any) -> Any:
    """Span attributes are str, bool, int, float or sequences of them; anything else (a UUID) as text."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return [_plain(v) for v in value]
    return str(value)


@contextlib.contextmanager
def span(
    name: str, *, kind: str = "internal", attributes: Mapping[str, Any] | None = None, **names: Any
) -> Iterator[Any]:
    """A span around the block, child of the current one; `kind` is internal, server or client.
    An exception leaving the block is recorded on it. Off: yields NO_SPAN."""
    if not _enabled:
        yield NO_SPAN
        return
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(
        name, kind=getattr(SpanKind, kind.upper()), attributes=_attributes(names, attributes)
    ) as current:
        yield current


@contextlib.contextmanager
def client_request(method: str, url: str, headers: dict[str, str]) -> Iterator[Any]:
    """A CLIENT span around an HTTP request our own client sends (the reply reader,
    conversations/llm/http_stream.py), its trace context put in `headers` as
    `traceparent`; give it the answer's status with `response_status`."""
    if not _enabled:
        yield NO_SPAN
        return
    from urllib.parse import urlsplit

    from opentelemetry import propagate

    parts = urlsplit(url)
    attributes = _client_attributes(method, parts.scheme, parts.hostname, parts.port, parts.path)
    with span(method, kind="client", attributes=attributes) as current:
        propagate.inject(headers)
        yield current


def response_status(current: Any, status: int) -> None:
    """An HTTP answer's status on a CLIENT span; from 400 on the span is an error."""
    if current is NO_SPAN:
        return
    current.set_attribute("http.response.status_code", status)
    if status >= 400:
        from opentelemetry.trace import Status, StatusCode

        current.set_status(Status(StatusCode.ERROR))


def _client_attributes(method: str, scheme: str, host: str, port: int | None, path: str) -> dict[str, Any]:
    """A CLIENT span's attributes; no query and no credentials: they are nobody's business in a trace."""
    return {
        "http.request.method": method,
        "url.full": f"{scheme}://{host}{f':{port}' if port else ''}{path}",
        "server.address": host,
        "server.port": port or (443 if scheme == "https" else 80),
    }


def set_attributes(*, attributes: Mapping[str, Any] | None = None, **names: Any) -> None:
    """Add attributes to the current span (e.g. the request's span from a view or middleware)."""
    if not _enabled:
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(_attributes(names, attributes))


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span in hex, as collectors show them; None when off."""
    if not _enabled:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def add_trace_ids(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: `trace_id` and `span_id` on every line logged inside a span."""
    ids = current_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict
