"""Pinned conversations, the sidebar's keyset index, and full-text search indexes.

The GIN indexes exist on PostgreSQL only (SQLite searches with icontains);
their expressions are exactly the ones `conversations.search` queries with,
so the planner can use them.
"""

from django.db import migrations, models

# conversations.search.SEARCH_CONFIG when this migration was written; changing
# that constant needs a new migration that rebuilds these indexes.
SEARCH_CONFIG = "english"

GIN_INDEXES = {
    "message_content_search": ("conversations_message", "content"),
    "conversation_title_search": ("conversations_conversation", "title"),
}


def create_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, (table, column) in GIN_INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
            f"USING gin (to_tsvector('{SEARCH_CONFIG}'::regconfig, {column}))"
        )


def drop_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in GIN_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="pinned",
            field=models.BooleanField(default=False),
        ),
        migrations.AddIndex(
            model_name="conversation",
            index=models.Index(
                fields=["owner", "archived", "-pinned", "-updated_at", "-id"], name="conversation_sidebar"
            ),
        ),
        migrations.RunPython(create_search_indexes, drop_search_indexes, elidable=False),
    ]
