from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        # Before the first request builds the middleware chain, which the Django
        # instrumentation joins; a no-op unless OTEL_EXPORTER_OTLP_ENDPOINT is set.
        from django.conf import settings

        from chatplatform import tracing

        tracing.configure(app_env=settings.APP_ENV, service_name=settings.OTEL_SERVICE_NAME)
