from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from conversations import reaping

        reaping.connect()  # acts only in a Celery worker: see conversations/reaping.py

        from django.db.models.signals import post_delete

        from conversations.models import Conversation, Document

        post_delete.connect(_remove_files, sender=Conversation, dispatch_uid="conversation-sandbox-files")
        post_delete.connect(_remove_upload, sender=Document, dispatch_uid="document-stored-file")


def _remove_upload(sender, instance, **kwargs) -> None:
    """An uploaded file's bytes go with its row, however it is deleted (by itself, with its
    collection, conversation or owner), once the deletion is committed."""
    from django.db import transaction

    from conversations.knowledge.services import remove_stored

    key = instance.key
    transaction.on_commit(lambda: remove_stored([key]))


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
