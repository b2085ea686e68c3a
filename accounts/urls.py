from django.urls import path

from accounts import views

urlpatterns = [
    path("pending/", views.pending, name="account_pending"),
]
