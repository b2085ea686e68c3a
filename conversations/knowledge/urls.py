from django.urls import path

from conversations.knowledge import views

urlpatterns = [
    path("", views.knowledge_page, name="knowledge"),
    path("collections", views.collection_list, name="collection_list"),
    path("collections/new", views.collection_create, name="collection_create"),
    path("collections/<int:collection_id>", views.collection_documents, name="collection_documents"),
    path("collections/<int:collection_id>/update", views.collection_update, name="collection_update"),
    path("collections/<int:collection_id>/delete", views.collection_delete, name="collection_delete"),
    path("conversations/<int:conversation_id>", views.conversation_documents, name="conversation_documents"),
    path(
        "conversations/<int:conversation_id>/collections",
        views.conversation_collections,
        name="conversation_collections",
    ),
    path("upload", views.upload, name="document_upload"),
    path("files/<int:document_id>", views.document_status, name="document_status"),
    path("files/<int:document_id>/retry", views.document_retry, name="document_retry"),
    path("files/<int:document_id>/delete", views.document_delete, name="document_delete"),
    path("files/<int:document_id>/download", views.document_download, name="document_download"),
]
