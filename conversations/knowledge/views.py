"""The knowledge page and its JSON calls: collections, uploads, file status, downloads.

Every call goes through conversations.knowledge.services, which checks the owner; errors are
JSON `{"error", "code"}` with the service's status. A stored file is only ever sent back
to someone who may read it, as an attachment, `application/octet-stream`, with nosniff and a
sandboxing CSP: an uploaded .html or .svg is never rendered by the browser.
"""

from __future__ import annotations

from functools import wraps

import redis
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import approved_required
from accounts.models import SiteSettings
from conversations.admission import SendError
from conversations.knowledge import convert, services
from conversations.knowledge import presence as knowledge_presence
from conversations.knowledge.ingest import reap, stored_path
from conversations.models import Document
from conversations.views import _json_body, approved_json


def _error(exc: SendError) -> JsonResponse:
    return JsonResponse({"error": exc.message, "code": exc.code}, status=exc.status)


def refusals(view):
    """A SendError from the view (services check the owner, the limits, the input) as its JSON error."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except SendError as exc:
            return _error(exc)

    return wrapper


def _documents(queryset) -> list[dict]:
    reap()  # a file whose worker died shows as failed (with a retry), not as forever "embedding"
    documents = [services.document_json(d) for d in queryset.order_by("-created", "-id")[:500]]
    return _say_why_waiting(documents)


def _say_why_waiting(documents: list[dict]) -> list[dict]:
    """A queued file says so when no knowledge worker is running to take it."""
    if any(d["status"] == "queued" for d in documents):
        try:
            none_running = not knowledge_presence.alive()
        except (OSError, redis.RedisError):
            none_running = False  # unknown: say nothing rather than something wrong
        for d in documents:
            d["no_worker"] = d["status"] == "queued" and none_running
    return documents


@approved_required
def knowledge_page(request: HttpRequest) -> HttpResponse:
    site = SiteSettings.load()
    collections = services.readable_collections(request.user).order_by("-shared", "name", "id")
    return render(
        request,
        "conversations/knowledge.html",
        {
            "page_data": {
                "enabled": site.knowledge_enabled,
                "is_admin": request.user.is_admin,
                "collections": [services.collection_json(c, request.user) for c in collections],
                "accept": convert.ACCEPT,
                "limits": {
                    "megabytes": site.upload_max_megabytes,
                    "pages": site.upload_max_pages,
                    "files": site.documents_per_user,
                    "storage_megabytes": site.knowledge_megabytes_per_user,
                },
            },
        },
    )


@require_GET
@approved_json
@refusals
def collection_list(request: HttpRequest) -> JsonResponse:
    collections = services.readable_collections(request.user).order_by("-shared", "name", "id")
    return JsonResponse({"collections": [services.collection_json(c, request.user) for c in collections]})


@require_POST
@approved_json
@refusals
def collection_create(request: HttpRequest) -> JsonResponse:
    body = _json_body(request)
    collection = services.collection_create(
        request.user,
        name=body.get("name"),
        description=body.get("description") or "",
        shared=body.get("shared", False),
    )
    return JsonResponse(services.collection_json(collection, request.user), status=201)


@require_POST
@approved_json
@refusals
def collection_update(request: HttpRequest, collection_id: int) -> JsonResponse:
    body = _json_body(request)
    collection = services.collection_update(
        request.user,
        collection_id,
        name=body.get("name"),
        description=body.get("description"),
        shared=body.get("shared"),
    )
    return JsonResponse(services.collection_json(collection, request.user))


@require_POST
@approved_json
@refusals
def collection_delete(request: HttpRequest, collection_id: int) -> JsonResponse:
    services.collection_delete(request.user, collection_id)
    return JsonResponse({"deleted": collection_id})


@require_GET
@approved_json
@refusals
def collection_documents(request: HttpRequest, collection_id: int) -> JsonResponse:
    collection = services.readable_collection(request.user, collection_id)
    documents = Document.objects.filter(collection=collection, owner_id=collection.owner_id)
    return JsonResponse(
        {"collection": services.collection_json(collection, request.user), "documents": _documents(documents)}
    )


@require_GET
@approved_json
@refusals
def conversation_documents(request: HttpRequest, conversation_id: int) -> JsonResponse:
    conversation = services.own_conversation(request.user, conversation_id)
    documents = Document.objects.filter(conversation=conversation, owner=request.user)
    collections = services.readable_collections(request.user).filter(pk__in=conversation.collections.values("pk"))
    return JsonResponse(
        {
            "documents": _documents(documents),
            "collections": [services.collection_json(c, request.user) for c in collections],
        }
    )


@require_POST
@approved_json
@refusals
def conversation_collections(request: HttpRequest, conversation_id: int) -> JsonResponse:
    conversation = services.own_conversation(request.user, conversation_id)
    ids = services.conversation_collections(request.user, conversation, _json_body(request).get("collections"))
    return JsonResponse({"collections": ids})


@require_POST
@approved_json
@refusals
def upload(request: HttpRequest) -> JsonResponse:
    """multipart/form-data: `file`, and `collection` or `conversation` (an id)."""
    site = SiteSettings.load()
    declared = request.META.get("CONTENT_LENGTH") or ""
    # Refused before the body is read when the request says it is too big.
    if declared.isdigit():
        services.check_size(max(int(declared) - 64 * 1024, 1), site)
    upload = request.FILES.get("file")
    if upload is None:
        raise SendError(gettext("Send the file in the form field `file`."), "invalid_params")
    services.check_size(upload.size, site)
    document = services.upload(
        request.user,
        services.Upload(name=upload.name or "", data=upload.read()),
        collection_id=request.POST.get("collection") or None,
        conversation_id=request.POST.get("conversation") or None,
    )
    return JsonResponse(services.document_json(document), status=201)


@require_GET
@approved_json
@refusals
def document_status(request: HttpRequest, document_id: int) -> JsonResponse:
    document = services.readable_document(request.user, document_id)
    reap()
    document.refresh_from_db()
    return JsonResponse(_say_why_waiting([services.document_json(document)])[0])


@require_POST
@approved_json
@refusals
def document_retry(request: HttpRequest, document_id: int) -> JsonResponse:
    document = services.retry(request.user, document_id)
    return JsonResponse(services.document_json(document))


@require_POST
@approved_json
@refusals
def document_delete(request: HttpRequest, document_id: int) -> JsonResponse:
    services.delete(request.user, document_id)
    return JsonResponse({"deleted": document_id})


@require_GET
@approved_required
@refusals
def document_download(request: HttpRequest, document_id: int) -> HttpResponse:
    document = services.readable_document(request.user, document_id)
    path = stored_path(document)
    if not path.is_file():
        raise services.not_found(gettext("file"))
    response = FileResponse(
        path.open("rb"), as_attachment=True, filename=document.name, content_type="application/octet-stream"
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
