"""Writes to accounts that carry rules (HackSoft style: keyword-only, <thing>_<action>)."""

from __future__ import annotations

from django.db import transaction

from accounts.models import Role, User


class LastAdminError(Exception):
    pass


def _check_not_last_admin(user: User) -> None:
    others = User.objects.filter(role=Role.ADMIN, is_active=True).exclude(pk=user.pk)
    if user.role == Role.ADMIN and user.is_active and not others.exists():
        raise LastAdminError(f"{user.email} is the last active admin; promote someone else first.")


@transaction.atomic
def user_set_role(*, user: User, role: str) -> bool:
    """Change a role; refuses to leave the site without an active admin. True if changed."""
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}")
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.role == role:
        return False
    if role != Role.ADMIN:
        _check_not_last_admin(user)
    user.role = role
    user.save(update_fields=["role", "is_staff", "is_superuser"])
    return True


@transaction.atomic
def user_set_active(*, user: User, active: bool) -> bool:
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_active == active:
        return False
    if not active:
        _check_not_last_admin(user)
    user.is_active = active
    user.save(update_fields=["is_active"])
    return True


@transaction.atomic
def user_approve(*, user: User) -> bool:
    """A pending (or rejected) signup becomes an active user."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.role != Role.PENDING:
        return False
    user.role = Role.USER
    user.is_active = True
    user.save(update_fields=["role", "is_active", "is_staff", "is_superuser"])
    return True


@transaction.atomic
def user_reject(*, user: User) -> bool:
    """A pending signup is deactivated: it can no longer log in, and the admin can delete it later."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.role != Role.PENDING or not user.is_active:
        return False
    user.is_active = False
    user.save(update_fields=["is_active"])
    return True


def usage_record(*, user_id: int, prompt_tokens: int, completion_tokens: int, requests: int = 1) -> None:
    """Add one call's tokens to the user's usage for today (an upsert, safe under concurrency)."""
    from django.db.models import F
    from django.utils import timezone

    from accounts.models import UsageDay

    day = timezone.localdate()
    with transaction.atomic():
        row, _ = UsageDay.objects.get_or_create(user_id=user_id, day=day)
        UsageDay.objects.filter(pk=row.pk).update(
            requests=F("requests") + requests,
            prompt_tokens=F("prompt_tokens") + prompt_tokens,
            completion_tokens=F("completion_tokens") + completion_tokens,
        )
