from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "documents"
    verbose_name = "Documents"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from documents import signals  # noqa: F401 (file deletion follows row deletion)
        from documents.daphne import stop_parsing_form_bodies
        from documents.search import ensure_index

        # The full-text index lives outside the ORM's models (a generated tsvector
        # column, or an FTS5 table and triggers): make sure it exists after every
        # migrate, so a migration that rebuilds the chunk table cannot lose it.
        post_migrate.connect(ensure_index, sender=self)
        # Uploads must not be parsed in the event loop by daphne's HTTP layer.
        stop_parsing_form_bodies()
