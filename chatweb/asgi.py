"""HTTP and websocket routing, served by daphne."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
django_asgi_app = get_asgi_application()  # first: it sets Django up before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatweb.limits import BodyLimit, bound_daphne_bodies  # noqa: E402
from chatweb.sqlite import keep_wal  # noqa: E402
from chatweb.trust import SameOriginValidator, behind_trusted_proxies  # noqa: E402
from conversations.api import ApiHandler  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402

api_asgi_app = ApiHandler()  # /api/: no browser middleware (see ApiHandler)
keep_wal()  # SQLite only: see there
bound_daphne_bodies()  # under daphne, an oversized body is refused before Twisted has read it all


async def http(scope, receive, send) -> None:
    path = scope["path"].removeprefix(scope.get("root_path", ""))
    app = api_asgi_app if path.startswith("/api/") else django_asgi_app
    await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": BodyLimit(http),
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
application = behind_trusted_proxies(application)
