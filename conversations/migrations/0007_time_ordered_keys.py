"""New conversations and messages get time-ordered keys (UUID version 7, chatplatform/ids.py).

Only the default changes, in Python: no SQL, and existing rows keep their keys
(docs/perf.md, change 40).
"""

import chatplatform.ids
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0006_fk_indexes_covered"),
    ]

    operations = [
        migrations.AlterField(
            model_name="conversation",
            name="id",
            field=models.UUIDField(
                default=chatplatform.ids.uuid7, editable=False, primary_key=True, serialize=False
            ),
        ),
        migrations.AlterField(
            model_name="message",
            name="id",
            field=models.UUIDField(
                default=chatplatform.ids.uuid7, editable=False, primary_key=True, serialize=False
            ),
        ),
    ]
