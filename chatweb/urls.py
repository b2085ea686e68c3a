from django.contrib import admin
from django.urls import include, path
from django.utils import timezone, translation
from django.views.decorators.cache import cache_control
from django.views.decorators.http import condition
from django.views.i18n import JavaScriptCatalog

from conversations import api, views

admin.site.site_header = "chatweb administration"
admin.site.site_title = "chatweb admin"

# Django's error pages, except under /api/: OpenAI's error shape there.
handler400 = "conversations.api.bad_request"
handler404 = "conversations.api.not_found"
handler500 = "conversations.api.server_error"

# The scripts' words (gettext, ngettext, interpolate) in the reader's language. They change
# only when the code does, that is with a restart: a browser keeps the catalog and asks
# each time whether it is still good (no-cache), and gets a 304 unless the server restarted
# or the reader's language changed (the ETag names both; Last-Modified as Django's docs do).
_STARTED = timezone.now()
javascript_catalog = condition(
    etag_func=lambda request: f"{int(_STARTED.timestamp())}-{translation.get_language()}",
    last_modified_func=lambda request: _STARTED,
)(cache_control(no_cache=True)(JavaScriptCatalog.as_view()))

urlpatterns = [
    path("", views.chat, name="chat"),
    path("c/<int:conversation_id>/", views.chat, name="conversation"),
    path("c/new", views.conversation_create, name="conversation_create"),
    path("c/list", views.conversation_list, name="conversation_list"),
    path("c/<int:conversation_id>/settings", views.conversation_configure, name="conversation_configure"),
    path("c/<int:conversation_id>/rename", views.conversation_rename, name="conversation_rename"),
    path("c/<int:conversation_id>/delete", views.conversation_delete, name="conversation_delete"),
    path("c/<int:conversation_id>/export.md", views.conversation_export, {"fmt": "md"}, name="export_markdown"),
    path("c/<int:conversation_id>/export.json", views.conversation_export, {"fmt": "json"}, name="export_json"),
    path("knowledge/", include("conversations.knowledge.urls")),
    path("models/status", views.model_status, name="model_status"),
    path("health", views.health, name="health"),
    path("jsi18n/", javascript_catalog, name="javascript_catalog"),
    path("accounts/", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include(api.urlpatterns)),
    path("api/v1/", include(api.urlpatterns)),
]
