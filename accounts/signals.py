"""A user's open chat sockets close when the user may no longer chat.

Every change of access goes through User.save() (accounts/services.py and the admin) or
a delete; logout through Django's logout(), which allauth calls too.
"""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import User
from accounts.sockets import NOT_APPROVED, UNAUTHENTICATED, close_user_sockets


@receiver(user_logged_out, dispatch_uid="accounts.sockets.logout")
def _close_on_logout(sender, request, user, **kwargs) -> None:
    # Logout flushes one session: the user's sockets on other browsers stay open.
    session = getattr(request, "session", None)
    if user is not None and session is not None and session.session_key:
        close_user_sockets(user_id=user.pk, code=UNAUTHENTICATED, session_key=session.session_key)


@receiver(post_save, sender=User, dispatch_uid="accounts.sockets.access")
def _close_on_access_change(sender, instance: User, created: bool, update_fields, raw: bool, **kwargs) -> None:
    # Any save that may have touched the access of a user who may not chat now: the old
    # values are not compared, since a user with no open socket costs one empty publish.
    if created or raw or instance.is_approved:
        return
    if update_fields is not None and not {"role", "is_active"} & set(update_fields):
        return
    close_user_sockets(user_id=instance.pk, code=NOT_APPROVED if instance.is_active else UNAUTHENTICATED)


@receiver(post_delete, sender=User, dispatch_uid="accounts.sockets.delete")
def _close_on_delete(sender, instance: User, **kwargs) -> None:
    close_user_sockets(user_id=instance.pk, code=UNAUTHENTICATED)
