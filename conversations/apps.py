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

        from celery import signals

        signals.worker_ready.connect(_load_embedder, dispatch_uid="conversations.knowledge.load-embedder")


def _load_embedder(sender, **kwargs) -> None:
    """An inference worker loads the embedding model as it starts, beside the engine: its
    first search of a user's files would otherwise wait about a second for it."""
    import threading

    from inference_worker.jobs import current_host

    try:
        current_host()
    except RuntimeError:  # a tool or knowledge worker: no turns here (a knowledge worker loads its own)
        return
    from conversations.knowledge.answering import warm_up

    threading.Thread(target=warm_up, name="load-embedder", daemon=True).start()


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
