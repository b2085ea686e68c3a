"""Create an API key for a user and print it (the only time it is shown)."""

from __future__ import annotations

import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import User
from accounts.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a user and print it once: manage.py create_api_key alice@example.com --name ci"

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("--name", required=True, help="what the key is for, shown in the key lists")
        parser.add_argument("--expires-days", type=int, default=None, help="expire after N days (default: never)")
        parser.add_argument("--save-history", action="store_true", help="save the key's calls as conversations")

    def handle(self, *args, email: str, name: str, expires_days: int | None, save_history: bool, **options) -> None:
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No account with the email {email}.")
        if not user.is_approved:
            raise CommandError(f"{user.email} is pending or deactivated: approve the account first.")
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be at least 1.")
        expires = timezone.now() + datetime.timedelta(days=expires_days) if expires_days else None
        try:
            row, key = api_key_create(user=user, name=name, expires=expires, save_history=save_history)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"Created “{row.name}” for {user.email} ({row.prefix}…); it is not shown again:")
        self.stdout.write(key)
