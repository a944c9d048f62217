"""Start-up's objects are left out of the garbage collector's full passes (chatplatform/asgi.py)."""

from __future__ import annotations

import json

from chatplatform.tests.test_settings import resolve

HEAP_PROBE = """
import gc, json
import chatplatform.asgi
print(json.dumps({"frozen": gc.get_freeze_count(), "walked": len(gc.get_objects())}))
"""


def test_what_start_up_made_is_frozen_and_a_full_collection_walks_only_what_came_after():
    proc = resolve(PROBE_CODE=HEAP_PROBE)
    assert proc.returncode == 0, proc.stderr
    heap = json.loads(proc.stdout.strip().splitlines()[-1])
    assert heap["frozen"] > 50_000  # Django, the apps and their imports
    assert heap["walked"] < heap["frozen"] / 20
