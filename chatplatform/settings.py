"""Django settings, read once from the environment (and `.env` when present).

Every variable is documented in `.env.example`. A fresh checkout runs with
nothing set: SQLite, the in-memory channel layer and local-memory cache.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from urllib.parse import quote

import environ
from django.core.exceptions import ImproperlyConfigured

from chatplatform.pool import check_unless_recent

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file() and not os.environ.get("CHATPLATFORM_IGNORE_DOTENV"):
    env.read_env(BASE_DIR / ".env", overwrite=False)

# An empty variable means "use the default", as in the original LLD: a
# `FOO=` line left in a .env or a compose file must not become "".
for _name, _value in list(os.environ.items()):
    if _value.strip() == "" and (
        _name.startswith(
            (
                "APP_",
                "LLM_",
                "CHAT_",
                "POSTGRES_",
                "LOG_",
                "SECURE_",
                "DOCUMENTS_",
                "OTEL_",
                "SIGNUP_",
                "OIDC_",
                "LOGIN_",
                "SETUP_",
                "EMAIL_",
                "DB_",
            )
        )
        or _name
        in {
            "DEBUG",
            "SECRET_KEY",
            "ALLOWED_HOSTS",
            "CSRF_TRUSTED_ORIGINS",
            "DATABASE_URL",
            "REDIS_URL",
            "ALLOW_SIGNUP",
            "SIGNUP_MODE",
            "LOCAL_LOGIN",
            "DEFAULT_FROM_EMAIL",
            "PASSWORD_RESET_TIMEOUT",
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
        }
    ):
        del os.environ[_name]

# --- environment -----------------------------------------------------------
APP_ENV = env.str("APP_ENV", default="development")
if APP_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"APP_ENV must be development, test or production, not {APP_ENV!r}")
PRODUCTION = APP_ENV == "production"
DEBUG = env.bool("DEBUG", default=APP_ENV == "development")

# --- security --------------------------------------------------------------
if PRODUCTION and not os.environ.get("SECRET_KEY"):
    raise ImproperlyConfigured("SECRET_KEY is required when APP_ENV=production")
SECRET_KEY = env.str("SECRET_KEY", default="dev-insecure-" + "x" * 50)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("SECURE_PROXY_SSL_HEADER", default=PRODUCTION) else None
)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^health/deps$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=PRODUCTION)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"

# --- application -----------------------------------------------------------
INSTALLED_APPS = [
    "daphne",  # runserver serves HTTP and WebSockets
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "mozilla_django_oidc",
    "ops",
    "conversations",
    "accounts",
    "documents",
    "api",
]

MIDDLEWARE = [
    "chatplatform.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "chatplatform.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "chatplatform.middleware.SessionEndedJsonMiddleware",
    "django.middleware.common.CommonMiddleware",
    "chatplatform.middleware.TimeZoneMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: it turns a locked-out login (flagged by the axes backend) into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatplatform.urls"
ASGI_APPLICATION = "chatplatform.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.theme",
            ],
        },
    },
]

# --- database --------------------------------------------------------------
# DATABASE_URL wins; else POSTGRES_HOST (with the other POSTGRES_* variables,
# as compose passes them) is composed into one; else SQLite in the checkout.
if "DATABASE_URL" not in os.environ and "POSTGRES_HOST" in os.environ:
    os.environ["DATABASE_URL"] = "postgres://{user}:{password}@{host}:{port}/{db}".format(
        user=quote(env.str("POSTGRES_USER", default="postgres"), safe=""),
        password=quote(env.str("POSTGRES_PASSWORD", default=""), safe=""),
        host=env.str("POSTGRES_HOST"),
        port=env.int("POSTGRES_PORT", default=5432),
        db=quote(env.str("POSTGRES_DB", default="chatplatform"), safe=""),
    )
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A pooled connection (and an event loop's own, chatplatform/loopdb.py) is checked with an
# empty query before it is used, unless it was last used less than this many seconds ago.
DB_POOL_CHECK_AFTER = env.float("DB_POOL_CHECK_AFTER", default=1.0)
# At most this many of an event loop's own connections at once (a socket's send on
# PostgreSQL runs its statements on one: conversations/loop_send.py).
DB_LOOP_CONNECTIONS = env.int("DB_LOOP_CONNECTIONS", default=4)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int(
        "DB_CONNECT_TIMEOUT", default=2
    )
    # A pool of open connections (psycopg_pool) instead of a new connection per
    # request or database hop: connecting costs 6-7 ms of CPU (SCRAM), 12 % of a
    # loaded process in docs/perf.md. Django refuses a pool with persistent
    # connections, so DB_POOL needs DB_CONN_MAX_AGE=0; checked connections (the
    # pool's check, or Django's health check without the pool) survive a database restart.
    if env.bool("DB_POOL", default=True):
        if DATABASES["default"]["CONN_MAX_AGE"]:
            raise ImproperlyConfigured(
                "DB_POOL=true needs DB_CONN_MAX_AGE=0 (Django pools or keeps connections, not both); "
                "set DB_POOL=false to use persistent connections instead"
            )
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
            # Seconds a hop waits for a connection before failing: as DB_CONNECT_TIMEOUT, so a
            # database that is away is reported as quickly as without the pool.
            "timeout": env.float("DB_POOL_TIMEOUT", default=2.0),
            # A connection is checked (an empty query) when the pool hands it out, unless it
            # was handed out less than this many seconds ago (chatplatform/pool.py; 0: always).
            "check": check_unless_recent(DB_POOL_CHECK_AFTER),
        }
        # Django's backend with one change: its pool takes the `check` above (Django's
        # refuses one among the pool's options; chatplatform/postgresql/base.py).
        DATABASES["default"]["ENGINE"] = "chatplatform.postgresql"
    # The statements every send and reply run are prepared once a connection has run
    # them this many times (conversations/statements.py `prepared_cursor`; every other
    # query is bound in Python and never prepared), and each is then planned once per
    # connection: PostgreSQL would plan a prepared statement afresh for its first five
    # runs, so a burst after a start or a deploy paid ~1 ms of planning a send (docs/perf.md).
    # 0 turns preparing off: for a transaction-mode pooler without prepared-statement
    # support (PgBouncer < 1.21), which may also refuse the connection's options.
    prepare_threshold = env.int("DB_PREPARE_THRESHOLD", default=1)
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = prepare_threshold or None
    if prepare_threshold:  # after any options DATABASE_URL gives (`?options=-c ...`)
        options = DATABASES["default"]["OPTIONS"]
        options["options"] = f"{options.get('options', '')} -c plan_cache_mode=force_generic_plan".lstrip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- channels and cache ----------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "conversations.layers.ChatRedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1500, "expiry": 30},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "chatplatform.cache.ChatRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "chat",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "conversations.layers.ChatInMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- auth, i18n, static ----------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Backends are set with the accounts settings below (axes first, then passwords, then SSO).
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# The cookie in which the page's script names the browser's time zone; dates are
# shown in it (chatplatform.middleware.TimeZoneMiddleware), nothing else uses it.
TIME_ZONE_COOKIE = "tz"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Outside production daphne serves static files straight from static/ (no collectstatic).
WHITENOISE_USE_FINDERS = not PRODUCTION
# Before collectstatic there is no STATIC_ROOT; the finders serve static/ meanwhile.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
WHITENOISE_AUTOREFRESH = DEBUG
DATA_UPLOAD_MAX_MEMORY_SIZE = 1_048_576

# --- logging ---------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if PRODUCTION else "console")
if LOG_FORMAT not in {"console", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be console or json, not {LOG_FORMAT!r}")
LOGGING_CONFIG = None  # chatplatform.logging configures stdlib and structlog together
from chatplatform.logging import configure_logging  # noqa: E402

configure_logging(level=LOG_LEVEL, fmt=LOG_FORMAT)

# --- LLM -------------------------------------------------------------------
LLM_PROVIDER = env.str("LLM_PROVIDER", default="auto")
LLM_BASE_URL = env.str("LLM_BASE_URL", default="")
LLM_API_KEY = env.str("LLM_API_KEY", default="")
LLM_MODEL = env.str("LLM_MODEL", default="")
LLM_MODEL_PATH = env.str("LLM_MODEL_PATH", default="")
LLM_TIMEOUT = env.float("LLM_TIMEOUT", default=30.0)
LLM_MAX_OUTPUT_TOKENS = env.int("LLM_MAX_OUTPUT_TOKENS", default=512)
LLM_CONTEXT_TOKENS = env.int("LLM_CONTEXT_TOKENS", default=8192)
LLM_THREADS = env.int("LLM_THREADS", default=min(4, os.cpu_count() or 1))
# The scripted provider (tests and benchmarks only): first-token delay in
# seconds, tokens per second, reply length in tokens.
LLM_FAKE_TTFT = env.float("LLM_FAKE_TTFT", default=0.05)
LLM_FAKE_TOKENS_PER_SECOND = env.float("LLM_FAKE_TOKENS_PER_SECOND", default=200.0)
LLM_FAKE_TOKENS = env.int("LLM_FAKE_TOKENS", default=40)
# Further model names the scripted provider lists and answers to (comma-separated).
LLM_FAKE_MODELS = env.list("LLM_FAKE_MODELS", default=[])

# --- chat limits -----------------------------------------------------------
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=32_000)
CHAT_MAX_FRAME_BYTES = env.int("CHAT_MAX_FRAME_BYTES", default=1_048_576)
CHAT_MESSAGES_PER_MINUTE = env.int("CHAT_MESSAGES_PER_MINUTE", default=20)
CHAT_CONCURRENT_REPLIES = env.int("CHAT_CONCURRENT_REPLIES", default=3)
CHAT_DAILY_TOKEN_BUDGET = env.int("CHAT_DAILY_TOKEN_BUDGET", default=200_000)
CHAT_FLUSH_INTERVAL_MS = env.int("CHAT_FLUSH_INTERVAL_MS", default=40)
# A busy process sends fewer, larger deltas: each reply's interval is the replies it
# streams divided by this many frames a second, between the interval above and
# CHAT_FLUSH_MAX_INTERVAL_MS (a frame costs the process ~55 us; docs/perf.md).
CHAT_FLUSH_FRAMES_PER_SECOND = env.int("CHAT_FLUSH_FRAMES_PER_SECOND", default=1000)
CHAT_FLUSH_MAX_INTERVAL_MS = env.int("CHAT_FLUSH_MAX_INTERVAL_MS", default=100)
CHAT_CHECKPOINT_SECONDS = env.float("CHAT_CHECKPOINT_SECONDS", default=1.0)
# A reply whose process stopped checkpointing for this long is `interrupted` by the
# sweep that runs every CHAT_SWEEP_SECONDS on every process (bound: the sum, 10 s).
CHAT_STALE_AFTER_SECONDS = env.float("CHAT_STALE_AFTER_SECONDS", default=8.0)
CHAT_SWEEP_SECONDS = env.float("CHAT_SWEEP_SECONDS", default=2.0)
# Every this many seconds a server process hands the C allocator's free pages back to
# the system (glibc's malloc_trim; 0: never): without it RSS creeps up over hours
# while the objects held level off (chatplatform/memory.py, docs/perf.md).
CHAT_MALLOC_TRIM_SECONDS = env.float("CHAT_MALLOC_TRIM_SECONDS", default=10.0)
# The event loop `python -m chatplatform.serve` runs daphne on (chatplatform/serve.py):
# uvloop's (in C: 16 % less CPU a reply at 100 streams, the median of six pairs in
# docs/perf.md) or asyncio's own.
CHAT_EVENT_LOOP = env.str("CHAT_EVENT_LOOP", default="uvloop").strip().lower()
if CHAT_EVENT_LOOP not in {"uvloop", "asyncio"}:
    raise ImproperlyConfigured(f"CHAT_EVENT_LOOP must be uvloop or asyncio, not {CHAT_EVENT_LOOP!r}")
# A send's hop and a reply's job load run on a pool of threads (each with a pooled
# database connection) instead of queueing on Django's one ORM thread: under load
# a send waits for the database, not for the sends before it (docs/perf.md).
CHAT_PARALLEL_HOPS = env.bool("CHAT_PARALLEL_HOPS", default=True)
# On PostgreSQL a socket's send runs its statements on the event loop (psycopg's async
# connections, chatplatform/loopdb.py) instead of in a thread hop: no hand-over of the
# GIL a round trip (docs/perf.md, round fifteen). false: the thread hop, as elsewhere.
CHAT_SEND_ON_LOOP = env.bool("CHAT_SEND_ON_LOOP", default=True)
# A stop waits this long for the reply's process to answer before marking it `interrupted`.
CHAT_STOP_ACK_SECONDS = env.float("CHAT_STOP_ACK_SECONDS", default=1.0)
# On SIGTERM: how long running replies may take to finish before they are interrupted.
CHAT_SHUTDOWN_GRACE_SECONDS = env.float("CHAT_SHUTDOWN_GRACE_SECONDS", default=25.0)
CHAT_HISTORY_PAGE = env.int("CHAT_HISTORY_PAGE", default=50)
# Title a conversation with the model after its first exchange (else its first words).
CHAT_TITLE_FROM_MODEL = env.bool("CHAT_TITLE_FROM_MODEL", default=True)
# Conversations per page of the sidebar (more load as one scrolls) and of search results.
CHAT_SIDEBAR_PAGE = env.int("CHAT_SIDEBAR_PAGE", default=50)

# --- data lifecycle --------------------------------------------------------
# `manage.py purge_old_conversations` deletes conversations idle for longer
# than this many days; 0 keeps them forever.
CHAT_RETENTION_DAYS = env.int("CHAT_RETENTION_DAYS", default=0)

# --- documents (attachments) -------------------------------------------------
# Where uploaded files live: any Django storage backend (dotted path) and its
# OPTIONS as JSON; by default a local directory beside the checkout.
DOCUMENTS_STORAGE_BACKEND = env.str(
    "DOCUMENTS_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"
)
DOCUMENTS_STORAGE_OPTIONS = env.json(
    "DOCUMENTS_STORAGE_OPTIONS", default={"location": str(BASE_DIR / "media" / "attachments")}
)
STORAGES["attachments"] = {"BACKEND": DOCUMENTS_STORAGE_BACKEND, "OPTIONS": DOCUMENTS_STORAGE_OPTIONS}
# Limits every uploaded file is held to (the file is refused, never cut short).
DOCUMENTS_MAX_BYTES = env.int("DOCUMENTS_MAX_BYTES", default=20 * 1024 * 1024)
DOCUMENTS_MAX_PAGES = env.int("DOCUMENTS_MAX_PAGES", default=500)
DOCUMENTS_MAX_TEXT_CHARS = env.int("DOCUMENTS_MAX_TEXT_CHARS", default=2_000_000)
DOCUMENTS_MAX_UNCOMPRESSED_BYTES = env.int("DOCUMENTS_MAX_UNCOMPRESSED_BYTES", default=100 * 1024 * 1024)
DOCUMENTS_MAX_PER_CONVERSATION = env.int("DOCUMENTS_MAX_PER_CONVERSATION", default=20)
# Threads per process that extract and index uploads (never the event loop's).
DOCUMENTS_WORKERS = env.int("DOCUMENTS_WORKERS", default=2)
# Chunks of about this many characters, each repeating the end of the one before.
DOCUMENTS_CHUNK_CHARS = env.int("DOCUMENTS_CHUNK_CHARS", default=1200)
DOCUMENTS_CHUNK_OVERLAP_CHARS = env.int("DOCUMENTS_CHUNK_OVERLAP_CHARS", default=200)
# Retrieval: tokens of passages a reply's context may carry, and at most this many passages.
DOCUMENTS_CONTEXT_TOKENS = env.int("DOCUMENTS_CONTEXT_TOKENS", default=2000)
DOCUMENTS_TOP_K = env.int("DOCUMENTS_TOP_K", default=5)
# A paste longer than this (characters) is offered as an attachment instead.
DOCUMENTS_PASTE_CHARS = env.int("DOCUMENTS_PASTE_CHARS", default=4000)

# --- traces ----------------------------------------------------------------
# OpenTelemetry over OTLP/HTTP (chatplatform/tracing.py), off unless an
# endpoint is set; the SDK reads the other standard OTEL_* variables itself
# (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED...).
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", default="")
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="chatplatform")
# --- accounts: sign-up, single sign-on, login throttling, email -------------
# open: anyone may sign up; invite: only with an invite link an admin made;
# closed: nobody. ALLOW_SIGNUP (true/false) is the deprecated spelling.
_signup_default = "closed" if PRODUCTION else "open"
if "SIGNUP_MODE" not in os.environ and "ALLOW_SIGNUP" in os.environ:
    _signup_default = "open" if env.bool("ALLOW_SIGNUP") else "closed"
SIGNUP_MODE = env.str("SIGNUP_MODE", default=_signup_default).strip().lower()
if SIGNUP_MODE not in {"open", "invite", "closed"}:
    raise ImproperlyConfigured(f"SIGNUP_MODE must be open, invite or closed, not {SIGNUP_MODE!r}")
# Comma-separated email domains a new account must have (local sign-up and SSO); empty: any.
SIGNUP_ALLOWED_DOMAINS = [
    d.strip().lower().lstrip("@") for d in env.list("SIGNUP_ALLOWED_DOMAINS", default=[])
]
SIGNUP_INVITE_DAYS = env.int("SIGNUP_INVITE_DAYS", default=7)
# The one-time "create the admin account" page of a fresh install asks for the
# setup token printed in the log (or `manage.py setup_token`); default: in production.
SETUP_REQUIRES_TOKEN = env.bool("SETUP_REQUIRES_TOKEN", default=PRODUCTION)
# false: no local passwords at all (single sign-on only; OIDC_* must be set).
LOCAL_LOGIN = env.bool("LOCAL_LOGIN", default=True)

# OpenID Connect (mozilla-django-oidc): on when OIDC_ISSUER (or OIDC_DISCOVERY_URL)
# and OIDC_CLIENT_ID are set. Endpoints and keys come from the discovery document.
OIDC_ISSUER = env.str("OIDC_ISSUER", default="").rstrip("/")
OIDC_DISCOVERY_URL = env.str(
    "OIDC_DISCOVERY_URL",
    default=f"{OIDC_ISSUER}/.well-known/openid-configuration" if OIDC_ISSUER else "",
)
OIDC_RP_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_CLIENT_SECRET", default="")
OIDC_RP_SCOPES = env.str("OIDC_SCOPES", default="openid email profile")
OIDC_RP_SIGN_ALGO = env.str("OIDC_SIGN_ALGO", default="RS256")
OIDC_BUTTON_LABEL = env.str("OIDC_BUTTON_LABEL", default="Log in with single sign-on")
# Create an account for a verified email the platform has not seen (else: only match existing ones).
OIDC_CREATE_USER = env.bool("OIDC_CREATE_USERS", default=True)
OIDC_TIMEOUT = env.float("OIDC_TIMEOUT", default=10.0)
OIDC_ENABLED = bool(OIDC_DISCOVERY_URL and OIDC_RP_CLIENT_ID)
OIDC_USE_PKCE = True
OIDC_AUTHENTICATE_CLASS = "accounts.oidc.AuthenticationRequestView"
OIDC_CALLBACK_CLASS = "accounts.oidc.AuthenticationCallbackView"
if not LOCAL_LOGIN and not OIDC_ENABLED:
    raise ImproperlyConfigured("LOCAL_LOGIN=false needs single sign-on: set OIDC_ISSUER and OIDC_CLIENT_ID")

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username before any password is checked.
    "accounts.throttle.LockoutBackend",
    *(["django.contrib.auth.backends.ModelBackend"] if LOCAL_LOGIN else []),
    *(["accounts.oidc.OIDCBackend"] if OIDC_ENABLED else []),
]

# Login throttling (django-axes): failures are counted in the database, so
# every process sees the same count; a username is locked after the limit, and
# so is a client address (password spraying across many usernames).
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = env.float("LOGIN_LOCKOUT_MINUTES", default=15.0) / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# How many proxies in front append to X-Forwarded-For (0: the peer address is the client).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "accounts.throttle.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.views.locked_out"
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_VERBOSE = False
# Every login, successful or not, would be a row: the failures are what count.
AXES_DISABLE_ACCESS_LOG = True

# Email (password reset): EMAIL_URL, e.g. smtp+tls://user:password@smtp.example.com:587,
# smtp+ssl://…:465, consolemail:// (the default outside production: mail is printed
# to the log), filemail:////path (one file per message).
_email = env.email_url("EMAIL_URL", default="smtp://localhost:25" if PRODUCTION else "consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL"))
# filemail:////var/mail/chat (four slashes: an absolute path) writes each message to a file.
EMAIL_FILE_PATH = _email.get("EMAIL_FILE_PATH") or None
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Chat <chat@localhost>")
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=3600)


# --- HTTP API (/v1/) -------------------------------------------------------
# The largest request body and the most messages one call may send.
API_MAX_REQUEST_BYTES = env.int("API_MAX_REQUEST_BYTES", default=1_048_576)
API_MAX_MESSAGES = env.int("API_MAX_MESSAGES", default=500)
