"""One formatter for every log line: structlog's, Django's, daphne's and the access log."""

from __future__ import annotations

import logging
import logging.config

import structlog

from chatplatform.tracing import add_trace_ids

_SHARED = [
    structlog.contextvars.merge_contextvars,
    add_trace_ids,  # trace_id/span_id link a line to its trace (when traces are on)
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _daphne_access_entry(self, host, date, request, status=None, length=None, ident=None, user=None) -> None:
    structlog.get_logger("daphne.access").info(
        "daphne_access", client=host, request=request, status=status, length=length
    )


def route_daphne_access_log() -> None:
    """Daphne writes its access log (HTTP lines and WebSocket connects) straight to
    a stream in NCSA format; send each entry through the formatter instead, so a
    JSON deployment has no line that is not JSON."""
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # daphne is optional for management commands
        return
    AccessLogGenerator.write_entry = _daphne_access_entry


def configure_logging(*, level: str = "INFO", fmt: str = "console") -> None:
    """Route stdlib logging and structlog through one ProcessorFormatter on stdout."""
    renderer = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = {
        "()": structlog.stdlib.ProcessorFormatter,
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
        "foreign_pre_chain": [*_SHARED, structlog.stdlib.ExtraAdder()],
    }
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"default": formatter},
            "handlers": {
                "stdout": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stdout",
                    "formatter": "default",
                }
            },
            "root": {"handlers": ["stdout"], "level": level},
            "loggers": {
                # Django and daphne log to their own loggers; none of them
                # keeps a handler of its own, so every line meets the formatter.
                "django": {"level": level, "handlers": [], "propagate": True},
                "django.server": {"level": level, "handlers": [], "propagate": True},
                "django.channels.server": {"level": level, "handlers": [], "propagate": True},
                "daphne": {"level": level, "handlers": [], "propagate": True},
                "httpx": {"level": "WARNING"},
                "httpx2": {"level": "WARNING"},  # the openai SDK's client logs every request at INFO
                "openai": {"level": "WARNING"},
            },
        }
    )
    logging.captureWarnings(True)  # warnings become log lines too
    route_daphne_access_log()
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
