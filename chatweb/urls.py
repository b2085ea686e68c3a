from django.contrib import admin
from django.urls import include, path

from conversations import api, views

admin.site.site_header = "chatweb administration"
admin.site.site_title = "chatweb admin"

urlpatterns = [
    path("", views.chat, name="chat"),
    path("c/<int:conversation_id>/", views.chat, name="conversation"),
    path("c/new", views.conversation_create, name="conversation_create"),
    path("health", views.health, name="health"),
    path("accounts/", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include(api.urlpatterns)),
    path("api/v1/", include(api.urlpatterns)),
]
