"""Settings for the gateway, read from the environment (see README "Configuration").

With no DATABASE_URL and no CELERY_BROKER_URL the gateway runs on its embedded default: SQLite
and a filesystem broker under ``var/``, which need no server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from gateway.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
)
from gateway.logconfig import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("GATEWAY_VAR_DIR", str(BASE_DIR / "var")))


def _own_directory(variable: str, path: Path) -> None:
    """Create ``path`` (the directory ``variable`` names) for this user's eyes only."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"{variable} must name a directory this process can create or use: "
            f"{path} ({exc.strerror})"
        ) from None


# The embedded database, the secret key and the broker's messages.
_own_directory("GATEWAY_VAR_DIR", VAR_DIR)


def _create_owner_only(path: Path, text: str) -> None:
    """Write a new file that only its owner can read, which appears whole or not at all."""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        # A second process starting at the same moment loses here and reads the winner's file.
        with contextlib.suppress(FileExistsError):
            os.link(staging, path)
    finally:
        staging.unlink()


def _embedded_secret_key() -> str:
    """A key kept in var/ so the embedded default works without configuration."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        _create_owner_only(path, secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY")
SECRET_KEY_FROM_VAR_DIR = not SECRET_KEY
if SECRET_KEY_FROM_VAR_DIR:
    SECRET_KEY = _embedded_secret_key()
DEBUG = env_bool("DEBUG", False)
# A deployment (its own SECRET_KEY and a database server) names the hosts it answers to: Django
# builds the Location URL from the Host header, so '*' would let any caller choose it. Anything
# else (the embedded default, a test run) answers on this machine's loopback names.
_DATABASE_SERVER = env_str("DATABASE_URL").lower().startswith(("postgres://", "postgresql://"))
_DEPLOYED = not DEBUG and not SECRET_KEY_FROM_VAR_DIR and _DATABASE_SERVER
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
if _DEPLOYED and not env_list("ALLOWED_HOSTS"):
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS must list the host names clients use to reach the gateway, "
        "comma-separated (e.g. gw.example.com), when SECRET_KEY and DATABASE_URL are set"
    )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Behind a TLS-terminating proxy: build the Location URL from X-Forwarded-Host/-Proto.
if env_bool("GATEWAY_BEHIND_PROXY", False):
    USE_X_FORWARDED_HOST = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Clients reach the gateway over HTTPS (through the proxy, or granian's own TLS): plain HTTP is
# redirected, browsers are told to stay on HTTPS, and the admin's cookies never travel in clear.
# The health and readiness checks are exempt: probes speak plain HTTP to the process itself.
if env_bool("GATEWAY_TLS", False):
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^(health|ready)$"]
    SECURE_HSTS_SECONDS = env_int("GATEWAY_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
# There is no CsrfViewMiddleware (see MIDDLEWARE): every admin view that takes a form enforces
# CSRF itself, and the API authenticates with tokens, never cookies.
# tests/gateway/test_deploy.py proves the admin's login still refuses a forged form.
SILENCED_SYSTEM_CHECKS = ["security.W003"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Redoc's script for /docs/, served from here, not a CDN
    "gateway",
    "gateway.access",
    "providers",
    "jobs",
    "jobs.webhooks",
]

# Every request passes through all of these. Sessions, auth and messages are the admin's and act
# on its pages only (gateway/middleware.py). CSRF protection is not a middleware: the API
# authenticates with tokens, not cookies, and every admin view that takes a form enforces CSRF
# itself (csrf_protect), so a global check would only cost the API's requests.
MIDDLEWARE = [
    "gateway.request_id.RequestIdMiddleware",  # first: every line a request logs carries its id
    "django.middleware.security.SecurityMiddleware",
    "gateway.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # serves the admin's static files
    "gateway.middleware.AdminSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "gateway.middleware.AdminAuthenticationMiddleware",
    "gateway.middleware.AdminMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gateway.urls"
WSGI_APPLICATION = "gateway.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
_EMBEDDED_DATABASE = VAR_DIR / "gateway.sqlite3"
_EMBEDDED_DATABASE_URL = f"sqlite:///{_EMBEDDED_DATABASE}"
_SQLITE = "django.db.backends.sqlite3"
DATABASE_URL = env_url("DATABASE_URL", _EMBEDDED_DATABASE_URL, ("postgres", "postgresql", "sqlite"))
try:
    _database = dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0),
        # A health check is one more round trip on every request. Connections are replaced
        # after DB_CONN_MAX_AGE seconds anyway, and one that breaks (the database restarted)
        # fails one request with 503 and is then replaced; turn the checks on to spare that.
        conn_health_checks=env_bool("DB_CONN_HEALTH_CHECKS", False),
    )
except ValueError:
    raise ImproperlyConfigured(
        "DATABASE_URL must be a URL such as postgres://user:password@host:5432/name"
    ) from None
DATABASES = {"default": _database}
if DATABASE_URL == _EMBEDDED_DATABASE_URL and not _EMBEDDED_DATABASE.exists():
    # SQLite creates the file, and its -wal and -shm files later, with the mode it finds here.
    os.close(os.open(_EMBEDDED_DATABASE, os.O_WRONLY | os.O_CREAT, 0o600))
if _database["ENGINE"] == _SQLITE:
    # WAL lets the web, worker and beat processes read while one of them writes; IMMEDIATE
    # transactions queue writers on the busy timeout instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int(
        "DB_CONNECT_TIMEOUT", 5, minimum=1
    )
    if env_bool("DB_PREPARED_STATEMENTS", True):
        # Parameters bound by the server, and a statement prepared once it has run five times
        # on a connection: Postgres then skips parsing and planning the submit's INSERT and the
        # poll's SELECT. Turn off behind a pooler in transaction mode (PgBouncer before 1.21).
        DATABASES["default"]["OPTIONS"].update(server_side_binding=True, prepare_threshold=5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Celery (the broker only rings the bell; the database is the record) ------------------------
# What Celery carries: bells (``jobs.run_jobs``, which only wakes the worker process's job
# engine) and beat's periodic tasks. The engine starts with the worker process and claims jobs
# from the table, polling as well as hearing bells, and provider calls run in it, never in
# Celery's pool. So these settings are left at Celery's defaults, as they govern nothing here:
# - acks_late / reject_on_worker_lost: a bell lost with its worker costs nothing (the jobs are
#   rows; other engines find them by polling) and beat sends its tasks again on schedule;
# - the prefetch multiplier: a bell takes microseconds, so how many a worker reserves changes
#   nothing, and a reserved bell holds no job.
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL",
    "filesystem://",
    ("redis", "rediss", "sentinel", "amqp", "amqps", "filesystem"),
)
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    _broker_dir.mkdir(mode=0o700, exist_ok=True)
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(mode=0o700, exist_ok=True)
    CELERY_BROKER_TRANSPORT = "gateway.broker:AtomicFilesystemTransport"
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # No ack emulation on Redis: a worker holding an unacknowledged message when Redis goes
    # away would try to restore it on a torn-down connection and exit. Nothing needs Redis to
    # redeliver: the job rows are the queue, and beat sends its tasks again.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 300, "ack_emulation": False}
# A worker without a broker still runs jobs from the table: it keeps trying to reach the broker
# for as long as it runs, at start and after losing it, instead of exiting after 100 tries.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_DEFAULT_QUEUE = env_str("GATEWAY_QUEUE", "gateway")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# The pool decides how many engines a worker runs. ``threads``: one, in the worker's own process,
# whose threads only hear bells and run beat's tasks (two, so a long purge does not hold up
# bells). ``prefork``: one per child process, CELERY_WORKER_CONCURRENCY of them (one per core
# on a host with more cores than workers). ``solo``: one, tasks run inline. Only this setting
# chooses prefork: Celery takes ``--pool prefork`` on the command line for its default and lets
# a configured pool win over it.
CELERY_WORKER_POOL = env_choice("CELERY_WORKER_POOL", "threads", {"threads", "solo", "prefork"})
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 2, minimum=1)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Beat writes its schedule file after every task it sends: the file's age is its health check.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- The gateway ---------------------------------------------------------------------------------
GATEWAY_DEFAULT_RESULT_TTL = env_int("GATEWAY_DEFAULT_RESULT_TTL", 3600, minimum=1)
GATEWAY_MAX_RESULT_TTL = env_int("GATEWAY_MAX_RESULT_TTL", 7 * 24 * 3600, minimum=1)
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
GATEWAY_MAX_PROMPTS = env_int("GATEWAY_MAX_PROMPTS", 128, minimum=1)
GATEWAY_MAX_PROMPT_CHARS = env_int("GATEWAY_MAX_PROMPT_CHARS", 400_000, minimum=1)
GATEWAY_MAX_CHOICES = env_int("GATEWAY_MAX_CHOICES", 256, minimum=1)
GATEWAY_MAX_FALLBACKS = env_int("GATEWAY_MAX_FALLBACKS", 5, minimum=0)
# Per job: upstream calls at worst (each target's calls per try, times its tries), and the
# max_tokens (max_completion_tokens, max_output_tokens) one answer may ask for.
GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB = env_int("GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB", 1024, minimum=1)
GATEWAY_MAX_TOKENS_PER_JOB = env_int("GATEWAY_MAX_TOKENS_PER_JOB", 262_144, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = GATEWAY_MAX_BODY_BYTES

# Worker engine
GATEWAY_WORKER_MAX_IN_FLIGHT = env_int("GATEWAY_WORKER_MAX_IN_FLIGHT", 400, minimum=1)
# How often an engine looks for pending jobs without a bell (a bell makes it look at once).
GATEWAY_WORKER_POLL_SECONDS = env_float("GATEWAY_WORKER_POLL_SECONDS", 1.0, minimum=0.05)
GATEWAY_JOB_LEASE_SECONDS = env_int("GATEWAY_JOB_LEASE_SECONDS", 60, minimum=5)
GATEWAY_JOB_MAX_ATTEMPTS = env_int("GATEWAY_JOB_MAX_ATTEMPTS", 3, minimum=1)
GATEWAY_JOB_TIMEOUT = env_float("GATEWAY_JOB_TIMEOUT", 900.0, minimum=1.0)
GATEWAY_REDISPATCH_AFTER = env_int("GATEWAY_REDISPATCH_AFTER", 60, minimum=1)
# Job ids per broker message, and whether submits publish from a background thread (batched).
GATEWAY_DISPATCH_BATCH = env_int("GATEWAY_DISPATCH_BATCH", 100, minimum=1)
GATEWAY_DISPATCH_IN_BACKGROUND = env_bool("GATEWAY_DISPATCH_IN_BACKGROUND", True)
GATEWAY_PURGE_BATCH_SIZE = env_int("GATEWAY_PURGE_BATCH_SIZE", 10_000, minimum=1)
# /ready answers 503 unless a worker's engine was seen within this many seconds (engines write
# a heartbeat every 5 s).
GATEWAY_READY_WORKER_SECONDS = env_int("GATEWAY_READY_WORKER_SECONDS", 30, minimum=10)

# Upstream calls and routing
GATEWAY_UPSTREAM_TIMEOUT = env_float("GATEWAY_UPSTREAM_TIMEOUT", 120.0, minimum=0.1)
GATEWAY_UPSTREAM_CONNECT_TIMEOUT = env_float("GATEWAY_UPSTREAM_CONNECT_TIMEOUT", 10.0, minimum=0.1)
GATEWAY_RETRIES = env_int("GATEWAY_RETRIES", 2, minimum=0)
GATEWAY_RETRY_BASE_DELAY = env_float("GATEWAY_RETRY_BASE_DELAY", 0.5, minimum=0.0)
GATEWAY_RETRY_MAX_DELAY = env_float("GATEWAY_RETRY_MAX_DELAY", 20.0, minimum=0.0)
GATEWAY_PROVIDER_CACHE_SECONDS = env_float("GATEWAY_PROVIDER_CACHE_SECONDS", 5.0, minimum=0.0)

# Metrics (GET /metrics): every process writes its samples to files in this directory, which
# prometheus-client's multiprocess mode reads through PROMETHEUS_MULTIPROC_DIR, and /metrics
# sums. The web, worker and beat processes of one host (or containers sharing a volume) must
# name the same directory; launchers empty it at start (gateway/metrics_dir.py).
GATEWAY_METRICS_DIR = Path(env_str("GATEWAY_METRICS_DIR", str(VAR_DIR / "metrics")))
_own_directory("GATEWAY_METRICS_DIR", GATEWAY_METRICS_DIR)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(GATEWAY_METRICS_DIR)
# A bearer token that may read /metrics besides admin JWTs (a scraper's); none when unset.
GATEWAY_METRICS_TOKEN = env_str("GATEWAY_METRICS_TOKEN")

# Credentials stored in the admin are encrypted with this key (derived from SECRET_KEY if unset).
GATEWAY_ENCRYPTION_KEY = env_str("GATEWAY_ENCRYPTION_KEY")

# JWTs: the algorithm is pinned; HS256 uses the secret, RS256/ES256 the key pair.
GATEWAY_JWT_ALGORITHM = env_choice("GATEWAY_JWT_ALGORITHM", "HS256", {"HS256", "RS256", "ES256"})
GATEWAY_JWT_SECRET = env_str("GATEWAY_JWT_SECRET")
GATEWAY_JWT_PUBLIC_KEY = env_str("GATEWAY_JWT_PUBLIC_KEY")
GATEWAY_JWT_PRIVATE_KEY = env_str("GATEWAY_JWT_PRIVATE_KEY")
GATEWAY_JWT_AUDIENCE = env_str("GATEWAY_JWT_AUDIENCE")
GATEWAY_JWT_ISSUER = env_str("GATEWAY_JWT_ISSUER")
GATEWAY_JWT_DEFAULT_LIFETIME = env_int("GATEWAY_JWT_DEFAULT_LIFETIME", 3600, minimum=1)
# The longest lifetime (exp - iat, and exp - now) a token is accepted with, per role.
GATEWAY_JWT_MAX_LIFETIME = env_int("GATEWAY_JWT_MAX_LIFETIME", 86400, minimum=1)
GATEWAY_JWT_ADMIN_MAX_LIFETIME = env_int("GATEWAY_JWT_ADMIN_MAX_LIFETIME", 3600, minimum=1)
# Seconds a web process keeps a virtual key it has read; a deactivated or deleted key stops
# working everywhere within this time. 0 reads the key on every request.
GATEWAY_KEY_CACHE_SECONDS = env_float("GATEWAY_KEY_CACHE_SECONDS", 5.0, minimum=0.0)

# --- REST framework and OpenAPI -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["gateway.access.authentication.GatewayAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["gateway.http.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "gateway.http.renderers.JSONFirstNegotiation",
    # The API answers only JSON: no ?format= override (an unknown one was an undocumented 404).
    "URL_FORMAT_OVERRIDE": None,
    "EXCEPTION_HANDLER": "gateway.http.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AI Gateway API",
    "DESCRIPTION": "Asynchronous completions behind virtual keys. Submit a job, get 202 and a job "
    "id at once, poll until it is completed or failed.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "REDOC_DIST": "SIDECAR",
}

# --- The rest of Django ------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(mode=0o700, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOG_LEVEL = env_choice(
    "LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, normalize=str.upper
)
LOG_FORMAT = env_choice("LOG_FORMAT", "plain", {"json", "plain"}, normalize=str.lower)
LOGGING = logging_config(LOG_LEVEL, LOG_FORMAT)

# --- Admin login throttling (django-axes) ------------------------------------------------------
# Failed admin logins are counted per username and client address; at the limit that pair is
# refused with 429 for the cool-off, a success resets the count. The API authenticates with
# tokens and never reaches Django's login, and the middleware acts on admin pages only.
GATEWAY_ADMIN_LOGIN_FAILURE_LIMIT = env_int("GATEWAY_ADMIN_LOGIN_FAILURE_LIMIT", 5, minimum=1)
GATEWAY_ADMIN_LOGIN_COOLOFF_MINUTES = env_int("GATEWAY_ADMIN_LOGIN_COOLOFF_MINUTES", 15, minimum=1)
INSTALLED_APPS += ["axes"]
# Last, as axes requires; a subclass acting on admin pages only, which axes' check cannot see.
MIDDLEWARE += ["gateway.middleware.AdminAxesMiddleware"]
SILENCED_SYSTEM_CHECKS += ["axes.W002"]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out pair before any check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = GATEWAY_ADMIN_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = GATEWAY_ADMIN_LOGIN_COOLOFF_MINUTES / 60  # axes reads a number as hours
# The pair, not either alone: someone guessing from elsewhere cannot lock a real admin out.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Failed attempts are kept with their form data; these values are masked there and in logs.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "csrfmiddlewaretoken"]
AXES_ONLY_ADMIN_SITE = True
AXES_LOCKOUT_CALLABLE = "gateway.admin_login.lockout_response"
# X-Forwarded-For is anyone's to write unless a proxy of ours sets it.
AXES_CLIENT_IP_CALLABLE = (
    "gateway.admin_login.forwarded_client_ip"
    if env_bool("GATEWAY_BEHIND_PROXY", False)
    else "gateway.admin_login.peer_client_ip"
)
