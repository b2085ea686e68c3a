from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from conversations import reaping

        reaping.connect()  # acts only in a Celery worker: see conversations/reaping.py
