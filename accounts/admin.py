from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.shortcuts import redirect
from django.urls import reverse

from accounts.models import ApiKey, Role, SiteSettings, UsageDay, User
from accounts.services import (
    LastAdminError,
    api_key_revoke,
    user_approve,
    user_reject,
    user_set_active,
    user_set_role,
)


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "role")


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = (
            "email",
            "role",
            "is_active",
            "requests_per_minute",
            "concurrent_generations",
            "tokens_per_day",
            "max_tokens_per_answer",
            "tool_calls_per_day",
        )


class RoleFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [
            ("pending", "Awaiting approval"),
            ("active", "Active"),
            ("inactive", "Deactivated or rejected"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "pending":
            return queryset.filter(role=Role.PENDING, is_active=True)
        if self.value() == "active":
            return queryset.filter(is_active=True).exclude(role=Role.PENDING)
        if self.value() == "inactive":
            return queryset.filter(is_active=False)
        return queryset


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    list_display = ("email", "role", "status", "joined", "active", "conversation_count", "tokens_used")
    list_filter = (RoleFilter, "role")
    search_fields = ("email",)
    ordering = ("-date_joined",)
    list_per_page = 100
    readonly_fields = ("date_joined", "last_login", "last_active")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Access", {"fields": ("role", "is_active")}),
        (
            "Limits",
            {
                "fields": (
                    "requests_per_minute",
                    "concurrent_generations",
                    "tokens_per_day",
                    "max_tokens_per_answer",
                    "tool_calls_per_day",
                ),
                "description": "Empty: the defaults in Site settings. 0: no limit.",
            },
        ),
        ("Dates", {"fields": ("date_joined", "last_login", "last_active")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "role", "usable_password", "password1", "password2")}),
    )
    filter_horizontal = ()
    actions = ["approve", "reject", "promote", "demote", "deactivate", "reactivate"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        # Through the reverse relation: accounts does not import conversations (.importlinter).
        conversations = User.objects.filter(pk=OuterRef("pk")).annotate(n=Count("conversations")).values("n")
        tokens = (
            UsageDay.objects.filter(user=OuterRef("pk"))
            .order_by()
            .values("user")
            .annotate(t=Sum("prompt_tokens") + Sum("completion_tokens"))
            .values("t")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                _conversations=Coalesce(Subquery(conversations, output_field=IntegerField()), Value(0)),
                _tokens=Coalesce(Subquery(tokens, output_field=IntegerField()), Value(0)),
            )
        )

    @admin.display(description="status")
    def status(self, user: User) -> str:
        if not user.is_active:
            return "rejected" if user.role == Role.PENDING else "deactivated"
        return "awaiting approval" if user.role == Role.PENDING else "active"

    @admin.display(description="joined", ordering="date_joined")
    def joined(self, user: User) -> str:
        return user.date_joined.strftime("%Y-%m-%d")

    @admin.display(description="last active", ordering="last_active")
    def active(self, user: User) -> str:
        return user.last_active.strftime("%Y-%m-%d %H:%M") if user.last_active else "never"

    @admin.display(description="conversations", ordering="_conversations")
    def conversation_count(self, user: User) -> int:
        return user._conversations

    @admin.display(description="tokens used", ordering="_tokens")
    def tokens_used(self, user: User) -> int:
        return user._tokens

    def _bulk(self, request: HttpRequest, queryset: QuerySet[User], verb: str, change) -> None:
        done = 0
        for user in queryset:
            try:
                if change(user):
                    done += 1
            except LastAdminError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        self.message_user(request, f"{verb} {done} user{'s' if done != 1 else ''}.", messages.SUCCESS)

    @admin.action(description="Approve selected pending users")
    def approve(self, request, queryset):
        self._bulk(request, queryset.filter(role=Role.PENDING), "Approved", lambda u: user_approve(user=u))

    @admin.action(description="Reject selected pending users (deactivate)")
    def reject(self, request, queryset):
        self._bulk(request, queryset.filter(role=Role.PENDING), "Rejected", lambda u: user_reject(user=u))

    @admin.action(description="Promote selected users to admin")
    def promote(self, request, queryset):
        self._bulk(request, queryset, "Promoted", lambda u: user_set_role(user=u, role=Role.ADMIN))

    @admin.action(description="Demote selected admins to user")
    def demote(self, request, queryset):
        self._bulk(
            request,
            queryset.filter(role=Role.ADMIN),
            "Demoted",
            lambda u: user_set_role(user=u, role=Role.USER),
        )

    @admin.action(description="Deactivate selected users")
    def deactivate(self, request, queryset):
        self._bulk(request, queryset, "Deactivated", lambda u: user_set_active(user=u, active=False))

    @admin.action(description="Reactivate selected users")
    def reactivate(self, request, queryset):
        self._bulk(request, queryset, "Reactivated", lambda u: user_set_active(user=u, active=True))

    def save_model(self, request, obj, form, change):
        if change and {"role", "is_active"} & set(form.changed_data):
            original = User.objects.get(pk=obj.pk)
            try:
                if "role" in form.changed_data:
                    user_set_role(user=original, role=obj.role)
                if "is_active" in form.changed_data:
                    user_set_active(user=original, active=obj.is_active)
            except LastAdminError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                obj.role, obj.is_active = original.role, original.is_active
        super().save_model(request, obj, form, change)


@admin.register(SiteSettings)
class SiteSettingsAdmin(admin.ModelAdmin):
    fields = (
        "signups_enabled",
        "default_role",
        "api_keys_enabled",
        "reasoning_visibility",
        "admins_read_conversations",
        "browser_tool_enabled",
        "python_tool_enabled",
        "default_requests_per_minute",
        "default_concurrent_generations",
        "default_tokens_per_day",
        "default_max_tokens_per_answer",
        "default_tool_calls_per_day",
        "knowledge_enabled",
        "upload_max_megabytes",
        "upload_max_pages",
        "documents_per_user",
        "knowledge_megabytes_per_user",
    )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        SiteSettings.load()
        return redirect(reverse("admin:accounts_sitesettings_change", args=[1]))


admin.site.unregister(Group)  # roles are the one permission model here


_index = admin.site.index


def index_with_pending(request: HttpRequest, extra_context=None):
    """The admin home says how many signups wait for approval, with a link to them."""
    pending = User.objects.filter(role=Role.PENDING, is_active=True).count()
    return _index(request, {**(extra_context or {}), "pending_signups": pending})


admin.site.index = index_with_pending


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Every user's keys: admins see usage and revoke; nobody sees or edits a key itself."""

    list_display = ("name", "user", "prefix_shown", "created", "last_used", "expires", "state", "requests", "tokens")
    list_filter = ("revoked", "expires")
    search_fields = ("name", "prefix", "user__email")
    list_select_related = ("user",)
    actions = ["revoke"]
    fields = ("user", "name", "prefix", "created", "expires", "revoked", "save_history", "last_used", "requests")
    readonly_fields = fields

    @admin.display(description="key")
    def prefix_shown(self, key: ApiKey) -> str:
        return f"{key.prefix}…"

    @admin.display(description="tokens in / out")
    def tokens(self, key: ApiKey) -> str:
        return f"{key.prompt_tokens:,} / {key.completion_tokens:,}"

    @admin.action(description="Revoke the selected keys (at once)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = sum(api_key_revoke(key=key) for key in queryset)
        self.message_user(request, f"Revoked {count} key{'s' if count != 1 else ''}.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are made by their owner (or `manage.py create_api_key`), so only they see it

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # revoke instead: the row keeps its usage
