"""The browser suite's live server: chatplatform.settings, with one URL added that fails on purpose.

The designed 500 page has to be met as a person meets it: a request the server
cannot answer, rendered by Django's `handler500` with DEBUG off. No production
route raises, so the live server (and only it) serves `tests.browser.live_urls`.
"""

from chatplatform.settings import *  # noqa: F403

ROOT_URLCONF = "tests.browser.live_urls"
