from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from conversations import reaping

        reaping.connect()  # acts only in a Celery worker: see conversations/reaping.py

        from django.db.models.signals import post_delete

        from conversations.models import Conversation

        post_delete.connect(_remove_files, sender=Conversation, dispatch_uid="conversation-sandbox-files")


def _remove_files(sender, instance, **kwargs) -> None:
    """A conversation's python files go with it (its own deletion, or its owner's), once
    the deletion is committed. Files a queue that is away could not be told of stay."""
    import logging

    from django.db import transaction

    from conversations.builtin import remote

    key = f"c{instance.pk}"

    def remove() -> None:
        try:
            remote.remove_workdir(key)
        except Exception as exc:  # noqa: BLE001 - the deletion stands; its files are left
            logging.getLogger(__name__).warning("removing the python files of %s failed (%s)", key, exc)

    transaction.on_commit(remove)
