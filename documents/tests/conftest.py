"""Fixtures of the documents tests: a storage directory per test, users and conversations."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from conversations.tests.conftest import (  # noqa: F401 (fixtures)
    _fresh_channel_layer,
    _fresh_rate_limits,
    fake_llm,
    make_conversation,
    make_user,
)


@pytest.fixture(autouse=True)
def attachment_dir(settings, tmp_path) -> Path:
    """Uploaded files go to a directory of this test's own (STORAGES["attachments"])."""
    location = tmp_path / "attachments"
    storages = copy.deepcopy(settings.STORAGES)
    storages["attachments"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(location)},
    }
    settings.STORAGES = storages
    return location


def stored_files(location: Path) -> list[Path]:
    return [path for path in location.rglob("*") if path.is_file()] if location.exists() else []
