"""chatplatform.settings exactly as APP_ENV=production resolves them, except where static files come from.

Production serves static files from a collectstatic manifest (the Dockerfile
builds it). A test server reads them from the source tree instead, so that it
needs no build step and writes nothing into the checkout; every security
setting (SSL redirect, HSTS, cookies, CSP, proxy header, DEBUG) is the real one.
"""

from chatplatform.settings import *  # noqa: F403
from chatplatform.settings import STORAGES

STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
WHITENOISE_USE_FINDERS = True
