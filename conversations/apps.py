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
    """A conversation's python files go with it (its own deletion, or its owner's)."""
    from conversations.builtin import sandbox

    sandbox.remove_workdir(f"c{instance.pk}")
