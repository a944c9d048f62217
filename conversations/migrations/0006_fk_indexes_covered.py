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

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

INDEXES = [
    ("conversations_message", "conversations_message_conversation_id_f1a2d5e9", "conversation_id"),
    ("conversations_conversation", "conversations_conversation_owner_id_67c5670c", "owner_id"),
    ("conversations_usageevent", "conversations_usageevent_user_id_41487a44", "user_id"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0005_message_time"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="conversation",
                    name="owner",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="conversations",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="usageevent",
                    name="user",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="usage_events",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="conversation",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="messages",
                        to="conversations.conversation",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX "{name}" ON "{table}" ("{column}")',
                )
                for table, name, column in INDEXES
            ],
        ),
    ]
