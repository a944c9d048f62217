"""The message search index leaves out replies still being written.

`message_content_search` indexed `to_tsvector(content)` of every row version:
each checkpoint of a streaming reply (about one a second) put its whole text
so far into the GIN index again, and the index's pending list, merged into the
index by whichever write filled it, filled that much faster. Partial, it
indexes a reply once, when its final write ends its `streaming` status
(docs/perf.md, change 41); `conversations.search.message_matches` asks for
finished messages, so the planner can use it.

Built beside the old one without blocking writes (CONCURRENTLY, so this
migration is not atomic), then given the old one's name. PostgreSQL only, as
migration 0002's indexes.
"""

from django.db import migrations

# conversations.search.SEARCH_CONFIG when this migration was written (as in 0002).
SEARCH_CONFIG = "english"
DOCUMENT = f"to_tsvector('{SEARCH_CONFIG}'::regconfig, content)"


def _replace(schema_editor, where: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for statement in (
        "DROP INDEX CONCURRENTLY IF EXISTS message_content_search_new",  # a build that failed
        "CREATE INDEX CONCURRENTLY message_content_search_new ON conversations_message "
        f"USING gin ({DOCUMENT}){where}",
        "DROP INDEX CONCURRENTLY IF EXISTS message_content_search",
        "ALTER INDEX message_content_search_new RENAME TO message_content_search",
    ):
        schema_editor.execute(statement)


def finished_only(apps, schema_editor):
    _replace(schema_editor, " WHERE status <> 'streaming'")


def every_row(apps, schema_editor):
    _replace(schema_editor, "")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("conversations", "0007_time_ordered_keys"),
    ]

    operations = [
        migrations.RunPython(finished_only, every_row, atomic=False, elidable=False),
    ]
