"""What a user may do with files and collections, checked against the owner on every call.

Every function takes the acting user and looks the object up through `own_*` / `readable_*`,
so another user's file or collection is "not found", never "forbidden" (an id reveals
nothing). Limits (size, pages, count, storage) are checked before anything is stored.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import SiteSettings, User
from conversations.admission import QUEUE_ERRORS, SendError, clean_text, queue_down
from conversations.knowledge import convert
from conversations.knowledge.ingest import stored_path
from conversations.knowledge.search import shared_q
from conversations.models import Collection, Conversation, Document, DocumentStatus

log = logging.getLogger(__name__)
MB = 1024 * 1024


def not_found(what: str) -> SendError:
    return SendError(gettext("No such %(what)s.") % {"what": what}, "not_found", status=404)


def knowledge_on(site: SiteSettings | None = None) -> None:
    if not (site or SiteSettings.load()).knowledge_enabled:
        raise SendError(gettext("Documents are turned off on this site."), "knowledge_disabled", status=403)


# --- collections --------------------------------------------------------------------------


def readable_collections(user: User):
    """A user's own collections and the shared ones."""
    return Collection.objects.filter(Q(owner=user) | shared_q())


def readable_collection(user: User, collection_id) -> Collection:
    collection = readable_collections(user).filter(pk=_id(collection_id)).first()
    if collection is None:
        raise not_found(gettext("collection"))
    return collection


def own_collection(user: User, collection_id) -> Collection:
    """A collection the user may change: their own (a shared one only its admin owner)."""
    collection = Collection.objects.filter(pk=_id(collection_id), owner=user).first()
    if collection is None:
        raise not_found(gettext("collection"))
    return collection


def flag(value, name: str) -> bool:
    """A JSON true or false (not "false", which bool() would take for true)."""
    if not isinstance(value, bool):
        raise SendError(gettext("%(name)s must be true or false.") % {"name": name}, "invalid_params")
    return value


def _id(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SendError(gettext("An id must be a number."), "invalid_id") from None
    if not 0 < number < 2**63:
        raise SendError(gettext("An id must be a number."), "invalid_id")
    return number


def collection_create(user: User, *, name, description="", shared=False) -> Collection:
    knowledge_on()
    name = clean_text(name, what=gettext("The name"), limit=100).strip()
    if not name:
        raise SendError(gettext("Give the collection a name."), "invalid_name")
    description = clean_text(description or "", what=gettext("The description"), limit=300).strip()
    if flag(shared, "shared") and not user.is_admin:
        raise SendError(gettext("Only an admin may share a collection with everyone."), "forbidden", status=403)
    return Collection.objects.create(owner=user, name=name, description=description, shared=flag(shared, "shared"))


def collection_update(user: User, collection_id, *, name=None, description=None, shared=None) -> Collection:
    knowledge_on()
    collection = own_collection(user, collection_id)
    if name is not None:
        name = clean_text(name, what=gettext("The name"), limit=100).strip()
        if not name:
            raise SendError(gettext("Give the collection a name."), "invalid_name")
        collection.name = name
    if description is not None:
        collection.description = clean_text(description, what=gettext("The description"), limit=300).strip()
    if shared is not None:
        shared = flag(shared, "shared")
        if shared and not user.is_admin:
            raise SendError(gettext("Only an admin may share a collection with everyone."), "forbidden", status=403)
        collection.shared = shared
    collection.save()
    return collection


def collection_delete(user: User, collection_id) -> None:
    own_collection(user, collection_id).delete()  # its files' bytes go too (conversations.apps)


def own_conversation(user: User, conversation_id) -> Conversation:
    conversation = Conversation.objects.filter(pk=_id(conversation_id), owner=user).first()
    if conversation is None:
        raise not_found(gettext("conversation"))
    return conversation


def conversation_collections(user: User, conversation: Conversation, collection_ids) -> list[int]:
    """Attach exactly these collections (readable by the conversation's owner) to it."""
    knowledge_on()
    if conversation.owner_id != user.pk:
        raise not_found(gettext("conversation"))
    if not isinstance(collection_ids, list) or len(collection_ids) > 50:
        raise SendError(gettext("collections must be a list of at most 50 ids."), "invalid_params")
    wanted = {_id(c) for c in collection_ids}
    found = set(readable_collections(user).filter(pk__in=wanted).values_list("pk", flat=True))
    if missing := wanted - found:
        raise not_found(gettext("collection") + f" ({min(missing)})")
    conversation.collections.set(sorted(found))
    return sorted(found)


# --- documents ----------------------------------------------------------------------------


def own_document(user: User, document_id) -> Document:
    document = Document.objects.filter(pk=_id(document_id), owner=user).first()
    if document is None:
        raise not_found(gettext("file"))
    return document


def readable_document(user: User, document_id) -> Document:
    """A file the user may read: their own, or one in a shared collection."""
    document = (
        Document.objects.filter(pk=_id(document_id))
        .filter(Q(owner=user) | (shared_q("collection__") & Q(owner_id=_collection_owner())))
        .first()
    )
    if document is None:
        raise not_found(gettext("file"))
    return document


def _collection_owner():
    from django.db.models import F

    return F("collection__owner_id")


@dataclass
class Upload:
    name: str
    data: bytes


def upload(user: User, upload: Upload, *, collection_id=None, conversation_id=None) -> Document:
    """Store a file for indexing, in one of the user's collections or conversations: every
    limit is checked, and the file's bytes against its kind, before anything is stored."""
    site = SiteSettings.load()
    knowledge_on(site)
    if (collection_id is None) == (conversation_id is None):
        raise SendError(gettext("Upload to a collection or to a conversation."), "invalid_params")
    collection = own_collection(user, collection_id) if collection_id is not None else None
    conversation = own_conversation(user, conversation_id) if conversation_id is not None else None
    name = convert.clean_name(upload.name)
    kind = convert.kind_of(name)
    if kind is None:
        raise SendError(
            gettext("%(name)s: this kind of file is not read. Upload one of: %(kinds)s.")
            % {"name": name, "kinds": ", ".join(sorted(convert.KINDS))},
            "unsupported_file",
        )
    check_size(len(upload.data), site)
    check_user_limits(user, len(upload.data), site)
    try:
        pages = convert.check(upload.data, kind, max_pages=site.upload_max_pages)
    except convert.Refused as exc:
        raise SendError(f"{name}: {exc}", "invalid_file") from None
    document = Document(
        owner=user,
        collection=collection,
        conversation=conversation,
        name=name,
        kind=kind,
        size=len(upload.data),
        sha256=hashlib.sha256(upload.data).hexdigest(),
        pages=pages,
    )
    path = stored_path(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(upload.data)  # a new key per upload: never another file's place
    try:
        with transaction.atomic():
            document.save()
    except BaseException:
        path.unlink(missing_ok=True)  # no row: nobody will ever ask for these bytes
        raise
    # Stored: if the queue is down now, the file is failed with a Retry, its bytes kept.
    transaction.on_commit(lambda: enqueue(document))
    return document


def check_size(size: int, site: SiteSettings) -> None:
    limit = site.upload_max_megabytes * MB
    if size > limit:
        raise SendError(
            gettext("This file is %(size)s MB; the limit is %(limit)s MB.")
            % {"size": f"{size / MB:.1f}", "limit": site.upload_max_megabytes},
            "file_too_large",
            status=413,
        )
    if size == 0:
        raise SendError(gettext("This file is empty."), "invalid_file")


def check_user_limits(user: User, size: int, site: SiteSettings) -> None:
    mine = Document.objects.filter(owner=user)
    if site.documents_per_user and mine.count() >= site.documents_per_user:
        raise SendError(
            gettext("You have %(count)s files, the most allowed; delete some first.")
            % {"count": site.documents_per_user},
            "too_many_files",
            status=429,
        )
    if site.knowledge_megabytes_per_user:
        used = mine.aggregate(total=Sum("size"))["total"] or 0
        if used + size > site.knowledge_megabytes_per_user * MB:
            raise SendError(
                gettext("Your files would take %(size)s MB; your storage is %(limit)s MB. Delete some first.")
                % {"size": f"{(used + size) / MB:.1f}", "limit": site.knowledge_megabytes_per_user},
                "storage_full",
                status=429,
            )


def enqueue(document: Document) -> None:
    from conversations.tasks import knowledge_ingest

    try:
        knowledge_ingest.apply_async(args=[document.pk], queue=settings.KNOWLEDGE_QUEUE)
    except QUEUE_ERRORS as exc:
        Document.objects.filter(pk=document.pk, status=DocumentStatus.QUEUED).update(
            status=DocumentStatus.FAILED,
            error=gettext("The file never reached the indexing queue. Retry."),
            updated=timezone.now(),
        )
        raise queue_down(exc) from exc


def retry(user: User, document_id) -> Document:
    """Index a failed file again (its bytes are kept)."""
    knowledge_on()
    document = own_document(user, document_id)
    if not may_retry(document):
        raise SendError(gettext("Only a file that failed can be retried."), "not_failed", status=409)
    with transaction.atomic():
        Document.objects.filter(pk=document.pk, status=document.status, updated=document.updated).update(
            status=DocumentStatus.QUEUED, error="", progress_done=0, progress_total=0, updated=timezone.now()
        )
        transaction.on_commit(lambda: enqueue(document))
    document.refresh_from_db()
    return document


QUEUED_RETRY_SECONDS = 600


def may_retry(document: Document) -> bool:
    """Failed, or queued for ten minutes untouched: its task may have been lost (Redis
    restarted without persistence). A retried file that was only slow is skipped by
    the second task: the claim is by status."""
    if document.status == DocumentStatus.FAILED:
        return True
    waited = (timezone.now() - document.updated).total_seconds()
    return document.status == DocumentStatus.QUEUED and waited > QUEUED_RETRY_SECONDS


def delete(user: User, document_id) -> None:
    # Its chunks, their full-text rows (a trigger) and its bytes (conversations.apps) go with it.
    # The row is locked first: a worker writing its chunks (under the same lock) finishes
    # before the delete reads them, instead of adding rows behind it.
    document = own_document(user, document_id)
    with transaction.atomic():
        Document.objects.select_for_update().filter(pk=document.pk).first()
        document.delete()


def remove_stored(keys) -> None:
    for key in keys:
        try:
            (settings.KNOWLEDGE_DIR / key.hex).unlink(missing_ok=True)
        except OSError:
            log.warning("removing the stored file %s failed", key, exc_info=True)


def document_json(document: Document) -> dict:
    return {
        "id": document.pk,
        "name": document.name,
        "kind": document.kind,
        "size": document.size,
        "pages": document.pages,
        "status": document.status,
        "status_label": str(DocumentStatus(document.status).label),
        "progress": {"done": document.progress_done, "total": document.progress_total},
        "error": document.error,
        "can_retry": may_retry(document),  # failed, or queued so long its task may be lost
        "chunks": document.chunk_count,
        "collection_id": document.collection_id,
        "conversation_id": document.conversation_id,
        "created": document.created.isoformat(),
    }


def collection_json(collection: Collection, user: User) -> dict:
    return {
        "id": collection.pk,
        "name": collection.name,
        "description": collection.description,
        "shared": collection.shared,
        "mine": collection.owner_id == user.pk,
        "files": collection.documents.count(),
    }
