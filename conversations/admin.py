"""Admin: presets (published to every user's model picker), read-only conversations, the audit log.

Reading other users' conversations is off unless the site setting allows it, and
each read is written to the audit log before the page is shown. That read is the
only admin page that shows a conversation's content (title, system prompt,
parameters, messages): every other one shows ids, owners and dates, refuses
query-string lookups on anything else, and the pages Django would head with the
title (history, autocomplete) are closed.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext, gettext_lazy

from accounts.models import SiteSettings
from conversations.builtin import steps
from conversations.models import Collection, Conversation, ConversationRead, Document, Preset


@admin.register(Preset)
class PresetAdmin(admin.ModelAdmin):
    list_display = ("name", "model", "description", "enabled")
    list_filter = ("enabled", "model")
    search_fields = ("name", "description")
    fields = ("name", "description", "model", "system_prompt", "params", "collections", "enabled")
    filter_horizontal = ("collections",)


@admin.register(Collection)
class SharedCollectionAdmin(admin.ModelAdmin):
    """Shared collections (every user searches them; their files are added on the knowledge
    page). Users' own collections are theirs: not listed here."""

    list_display = ("name", "owner", "description", "file_count", "updated")
    search_fields = ("name", "description")
    fields = ("name", "description", "shared")

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).filter(shared=True).annotate(files=Count("documents"))

    @admin.display(description=gettext_lazy("files"), ordering="files")
    def file_count(self, obj) -> int:
        return obj.files

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_admin(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return _is_admin(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return _is_admin(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _is_admin(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return _is_admin(request)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {"shared": True}

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.owner = request.user
        super().save_model(request, obj, form, change)


def _is_admin(request: HttpRequest) -> bool:
    # The admin asks the model admins on its login page too, where the user is anonymous.
    return request.user.is_authenticated and request.user.is_admin


def _may_read(request: HttpRequest) -> bool:
    return _is_admin(request) and SiteSettings.load().admins_read_conversations


class MetadataLookupsOnly:
    """Query-string lookups (`?field__lookup=value`) only on the fields in `lookup_fields`.

    Django allows any lookup on a model's own fields, so `?title__icontains=...` would
    answer yes/no questions about content without an audit row; an allow-list also
    covers fields added later.
    """

    lookup_fields: frozenset[str] = frozenset()

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        field = lookup.split(LOOKUP_SEP, 1)[0]
        return field in self.lookup_fields and super().lookup_allowed(lookup, value, request)


class ReadOnly:
    """An admin page nobody edits, seen by those `may_see` lets in."""

    @staticmethod
    def may_see(request: HttpRequest) -> bool:
        return _is_admin(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.may_see(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.may_see(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnly, MetadataLookupsOnly, admin.ModelAdmin):
    # Titles are often the first line of the first message: the list shows none of the
    # content; opening one (which is logged) does.
    list_display = ("conversation_id", "owner", "model", "message_count", "updated")
    lookup_fields = frozenset({"pk", "id", "owner", "model", "created", "updated"})
    actions = None  # an action's checkbox is labelled with the object's str: the title
    list_select_related = ("owner", "model")
    list_filter = ("model",)
    search_fields = ("owner__email",)
    date_hierarchy = "updated"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner", "model").annotate(message_count=Count("messages"))

    @admin.display(description="conversation", ordering="pk")
    def conversation_id(self, obj: Conversation) -> str:
        return f"#{obj.pk}"

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count

    may_see = staticmethod(_may_read)

    def to_field_allowed(self, request: HttpRequest, to_field: str) -> bool:
        # No other admin page picks a conversation (autocomplete, raw-id popups): such
        # a picker lists every title, and nothing here needs one.
        return False

    def history_view(self, request: HttpRequest, object_id: str, extra_context=None) -> HttpResponse:
        # The admin never changes a conversation, so there is no history to show, and
        # the page would be headed with the title.
        raise PermissionDenied

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None) -> HttpResponse:
        """A read-only transcript (every branch, oldest first); the read is logged first."""
        if not self.has_view_permission(request):
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        conversation = self.get_object(request, unquote(object_id))  # None for a missing or malformed id
        if conversation is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        ConversationRead.objects.create(
            reader=request.user,
            reader_email=request.user.email,
            owner=conversation.owner,
            owner_email=conversation.owner.email,
            conversation=conversation,
            # No title: the log outlives the conversation, and whoever reads the log
            # would read the title without an audit row of their own.
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{conversation} (read only)",
            "conversation": conversation,
            "messages_list": [_with_steps(m) for m in conversation.messages.all()],
            "show_reasoning": SiteSettings.load().may_see_reasoning(request.user),
        }
        return TemplateResponse(request, "admin/conversations/conversation/read.html", context)


@admin.register(ConversationRead)
class ConversationReadAdmin(MetadataLookupsOnly, admin.ModelAdmin):
    # Who read whose conversation and when; not what it says (older rows may still
    # hold a title, shown nowhere).
    list_display = ("created", "reader_email", "owner_email", "conversation_ref")
    list_filter = ("created",)
    search_fields = ("reader_email", "owner_email")
    date_hierarchy = "created"
    fields = readonly_fields = ("created", "reader_email", "owner_email", "conversation_ref")
    lookup_fields = frozenset({"pk", "id", "created", "reader", "reader_email", "owner", "owner_email", "conversation"})

    @admin.display(description=gettext_lazy("conversation"), ordering="conversation_id")
    def conversation_ref(self, entry: ConversationRead) -> str:
        return f"#{entry.conversation_id}" if entry.conversation_id else gettext("deleted")

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


def _with_steps(message):
    """The message, with its tool steps in words for the transcript."""
    message.steps_read = [{"headline": steps.headline(s), "details": steps.details(s)} for s in message.tool_steps]
    message.sources_read = [(f"[{s.get('n')}] {steps.source_label(s)}", s.get("text", "")) for s in message.sources]
    return message


@admin.register(Document)
class DocumentAdmin(ReadOnly, MetadataLookupsOnly, admin.ModelAdmin):
    """Files as operations see them: owner, kind, size, state and error; never their names or
    text (a user's files are theirs, as their conversations are)."""

    list_display = ("id", "owner", "kind", "size", "status", "chunk_count", "created")
    list_display_links = None  # no page of its own: it would be headed with the file's name
    list_filter = ("status", "kind")
    lookup_fields = {"id", "pk", "owner", "status", "kind", "created"}

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and self.may_see(request)  # the list only
