"""Admin: presets (published to every user's model picker), read-only conversations, the audit log.

Reading other users' conversations is off unless the site setting allows it, and
each read is written to the audit log before the page is shown.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse

from accounts.models import SiteSettings
from conversations.models import Conversation, ConversationRead, Preset


@admin.register(Preset)
class PresetAdmin(admin.ModelAdmin):
    list_display = ("name", "model", "description", "enabled")
    list_filter = ("enabled", "model")
    search_fields = ("name", "description")
    fields = ("name", "description", "model", "system_prompt", "params", "enabled")


def _is_admin(request: HttpRequest) -> bool:
    # The admin asks the model admins on its login page too, where the user is anonymous.
    return request.user.is_authenticated and request.user.is_admin


def _may_read(request: HttpRequest) -> bool:
    return _is_admin(request) and SiteSettings.load().admins_read_conversations


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    # Titles are often the first line of the first message: the list shows none of the
    # content; opening one (which is logged) does.
    list_display = ("conversation_id", "owner", "model", "message_count", "updated")
    list_select_related = ("owner", "model")
    list_filter = ("model",)
    search_fields = ("owner__email",)
    date_hierarchy = "updated"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(message_count=Count("messages"))

    @admin.display(description="conversation", ordering="pk")
    def conversation_id(self, obj: Conversation) -> str:
        return f"#{obj.pk}"

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _may_read(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return _may_read(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None) -> HttpResponse:
        """A read-only transcript (every branch, oldest first); the read is logged first."""
        if not self.has_view_permission(request):
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        conversation = get_object_or_404(Conversation.objects.select_related("owner", "model"), pk=object_id)
        ConversationRead.objects.create(
            reader=request.user,
            reader_email=request.user.email,
            owner=conversation.owner,
            owner_email=conversation.owner.email,
            conversation=conversation,
            conversation_title=str(conversation)[:200],
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{conversation} (read only)",
            "conversation": conversation,
            "messages_list": conversation.messages.all(),
            "show_reasoning": SiteSettings.load().may_see_reasoning(request.user),
        }
        return TemplateResponse(request, "admin/conversations/conversation/read.html", context)


@admin.register(ConversationRead)
class ConversationReadAdmin(admin.ModelAdmin):
    list_display = ("created", "reader_email", "owner_email", "conversation_title")
    list_filter = ("created",)
    search_fields = ("reader_email", "owner_email", "conversation_title")
    date_hierarchy = "created"

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_admin(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return _is_admin(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # an audit log nobody can edit

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
