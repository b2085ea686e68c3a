from django.apps import AppConfig


class InferenceWorkerConfig(AppConfig):
    name = "inference_worker"
    verbose_name = "Inference"
    default_auto_field = "django.db.models.BigAutoField"
