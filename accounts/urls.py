from django.urls import path

from accounts import views

urlpatterns = [
    path("pending/", views.pending, name="account_pending"),
    path("keys/", views.api_keys, name="api_keys"),
    path("keys/<int:key_id>/revoke", views.api_key_revoke, name="api_key_revoke"),
]
