"""Drop the foreign keys' own indexes that a composite index already begins with.

`message.conversation_id` is the first column of `message_conversation_time`,
`conversation.owner_id` of `conversation_owner_recent` and
`conversation_sidebar`, `usageevent.user_id` of `usage_user_time`: lookups and
the foreign keys' checks use those, and every written row version no longer
maintains one more index (docs/perf.md, change 35).

Written as SQL, not as the `AlterField` Django derives from `db_index=False`:
on PostgreSQL that drops and re-adds each foreign key constraint (a full scan
of the table to validate it) and drops `one_streaming_reply_per_conversation`
too (an index on the same single column), without making it again.
"""

from django.conf import settings
from django.db import migrations, models

# (model, foreign key, what it points at, its related_name, the index Django made for it)
FIELDS = [
    ("message", "conversation", "conversations.conversation", "messages", "f1a2d5e9"),
    ("conversation", "owner", settings.AUTH_USER_MODEL, "conversations", "67c5670c"),
    ("usageevent", "user", settings.AUTH_USER_MODEL, "usage_events", "41487a44"),
]


def without_own_index(model, name, to, related_name, _):
    field = models.ForeignKey(to=to, on_delete=models.CASCADE, related_name=related_name, db_index=False)
    return migrations.AlterField(model_name=model, name=name, field=field)


def drop_own_index(model, name, _to, _related_name, suffix):
    table, column = f"conversations_{model}", f"{name}_id"
    index = f"{table}_{column}_{suffix}"
    return migrations.RunSQL(
        sql=f'DROP INDEX IF EXISTS "{index}"',
        reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("{column}")',
    )


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0005_message_time"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[without_own_index(*field) for field in FIELDS],
            database_operations=[drop_own_index(*field) for field in FIELDS],
        ),
    ]
