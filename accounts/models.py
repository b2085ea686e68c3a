from __future__ import annotations

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models, transaction
from django.utils import timezone


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    USER = "user", "User"
    PENDING = "pending", "Pending approval"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("role", Role.USER)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra["role"] = Role.ADMIN
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """An account. `role` decides what it may do; is_staff / is_superuser follow it."""

    username = None
    first_name = None
    last_name = None
    email = models.EmailField("email address", unique=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.PENDING, db_index=True)
    last_active = models.DateTimeField(null=True, blank=True)
    # Limits for this user; empty: the site's defaults (Site settings). 0: no limit.
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    concurrent_generations = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True)
    max_tokens_per_answer = models.PositiveIntegerField(null=True, blank=True)
    tool_calls_per_day = models.PositiveIntegerField(null=True, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        ordering = ["-date_joined"]

    def __str__(self) -> str:
        return self.email

    @property
    def is_admin(self) -> bool:
        return self.is_active and self.role == Role.ADMIN

    @property
    def is_approved(self) -> bool:
        """May chat and use the API: an active admin or user."""
        return self.is_active and self.role in (Role.ADMIN, Role.USER)

    @property
    def is_pending(self) -> bool:
        return self.role == Role.PENDING

    def save(self, *args, **kwargs) -> None:
        if self.is_superuser and self.role != Role.ADMIN and self._state.adding:
            self.role = Role.ADMIN  # createsuperuser and friends
        self.is_staff = self.is_superuser = self.role == Role.ADMIN
        creating = self._state.adding
        with transaction.atomic():
            super().save(*args, **kwargs)
            if creating and SiteSettings.claim_first_account(self):
                self.role = Role.ADMIN
                self.is_staff = self.is_superuser = True
                super().save(update_fields=["role", "is_staff", "is_superuser"])


class ReasoningVisibility(models.TextChoices):
    EVERYONE = "everyone", "Everyone"
    ADMINS = "admins", "Admins only"
    NOBODY = "nobody", "Nobody"


class SiteSettings(models.Model):
    """The one row of site-wide settings, edited by admins in the admin panel."""

    signups_enabled = models.BooleanField(
        "new signups enabled", default=True, help_text="Off: the signup page says so and creates nothing."
    )
    default_role = models.CharField(
        "role of a new signup",
        max_length=16,
        choices=[(Role.PENDING, "Pending approval"), (Role.USER, "User (approved at once)")],
        default=Role.PENDING,
    )
    api_keys_enabled = models.BooleanField("API keys enabled", default=True)
    reasoning_visibility = models.CharField(
        "who sees model reasoning",
        max_length=16,
        choices=ReasoningVisibility.choices,
        default=ReasoningVisibility.EVERYONE,
    )
    browser_tool_enabled = models.BooleanField(
        "built-in tool: browser",
        default=False,
        help_text="gpt-oss may search (BROWSER_SEARCH_URL) and open public pages, where a conversation turns it on.",
    )
    python_tool_enabled = models.BooleanField(
        "built-in tool: python",
        default=False,
        help_text="gpt-oss may run python in a sandbox (no network), where a conversation turns it on.",
    )
    admins_read_conversations = models.BooleanField(
        "admins may read users' conversations",
        default=True,
        help_text="Each such read is written to the audit log.",
    )
    default_requests_per_minute = models.PositiveIntegerField(
        "requests per minute (per user)", default=60, help_text="Chat and API together. 0: no limit."
    )
    default_concurrent_generations = models.PositiveIntegerField(
        "answers at once (per user)", default=4, help_text="0: no limit."
    )
    default_tokens_per_day = models.PositiveBigIntegerField(
        "tokens per day (per user)", default=2_000_000, help_text="Prompt and completion tokens. 0: no limit."
    )
    default_max_tokens_per_answer = models.PositiveIntegerField(
        "tokens per answer (per user)",
        default=0,
        help_text="The most an answer may be asked to write (max_tokens). 0: up to the model's context.",
    )
    default_tool_calls_per_day = models.PositiveIntegerField(
        "built-in tool calls per day (per user)",
        default=500,
        help_text="Searches, pages opened and python runs, chat and API together. 0: no limit.",
    )
    knowledge_enabled = models.BooleanField(
        "documents and knowledge",
        default=True,
        help_text="Users may upload files and make collections; answers search them.",
    )
    upload_max_megabytes = models.PositiveIntegerField(
        "largest upload (MB)", default=25, help_text="A bigger file is refused before it is stored."
    )
    upload_max_pages = models.PositiveIntegerField(
        "most pages in a file", default=500, help_text="PDF pages or slides; a longer file is refused before indexing."
    )
    documents_per_user = models.PositiveIntegerField(
        "files per user", default=200, help_text="Across the user's conversations and collections. 0: no limit."
    )
    knowledge_megabytes_per_user = models.PositiveIntegerField(
        "storage per user (MB)", default=500, help_text="The user's uploaded files together. 0: no limit."
    )
    # Set once, by a conditional UPDATE, to the first account ever created: the
    # database serialises two concurrent claims, so exactly one becomes admin.
    first_account = models.OneToOneField(
        "accounts.User", null=True, blank=True, editable=False, on_delete=models.SET_NULL, related_name="+"
    )
    first_account_claimed = models.BooleanField(default=False, editable=False)

    class Meta:
        verbose_name = verbose_name_plural = "site settings"

    def __str__(self) -> str:
        return "Site settings"

    def save(self, *args, **kwargs) -> None:
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> SiteSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj

    @classmethod
    def claim_first_account(cls, user: User) -> bool:
        cls.objects.get_or_create(pk=1)
        claimed = cls.objects.filter(pk=1, first_account_claimed=False).update(
            first_account=user, first_account_claimed=True
        )
        return claimed == 1

    def tool_enabled(self, name: str) -> bool:
        return {"browser": self.browser_tool_enabled, "python": self.python_tool_enabled}.get(name, False)

    def may_see_reasoning(self, user: User) -> bool:
        if self.reasoning_visibility == ReasoningVisibility.EVERYONE:
            return True
        if self.reasoning_visibility == ReasoningVisibility.ADMINS:
            return user.is_admin
        return False


def touch_last_active(user: User, *, every_seconds: int = 300) -> None:
    """Record activity, writing at most once per `every_seconds` per user."""
    now = timezone.now()
    if user.last_active and (now - user.last_active).total_seconds() < every_seconds:
        return
    User.objects.filter(pk=user.pk).update(last_active=now)
    user.last_active = now


class UsageDay(models.Model):
    """Requests and tokens per user per day (the chat and the API alike)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField()
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    tool_calls = models.PositiveIntegerField(default=0)  # built-in tools run (a search, a page, python)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "day"], name="usage_day_unique")]

    def __str__(self) -> str:
        return f"{self.user} {self.day}"


API_KEY_PREFIX = "sk-cw-"


class ApiKey(models.Model):
    """A named key for /api/. The key itself is shown once; only its prefix and an HMAC are kept.

    Looked up by the indexed prefix, then compared in constant time (healthchecks' way).
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=20, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(null=True, blank=True, help_text="Empty: never.")
    revoked = models.DateTimeField(null=True, blank=True, editable=False)
    save_history = models.BooleanField(
        "save calls to my conversations", default=False, help_text="Each call becomes a conversation in the chat."
    )
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    requests = models.PositiveBigIntegerField(default=0, editable=False)
    prompt_tokens = models.PositiveBigIntegerField(default=0, editable=False)
    completion_tokens = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_live(self) -> bool:
        return self.revoked is None and (self.expires is None or self.expires > timezone.now())

    @property
    def state(self) -> str:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= timezone.now():
            return "expired"
        return "active"
