"""The pages' Content-Security-Policy (django-csp; the policy itself is in settings).

connect-src names the page's own websocket origin as well as 'self': CSP 3 lets 'self'
cover ws:/wss: on the same host, but browsers that predate it (older Safari) do not.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase


class PagePolicyMiddleware(CSPMiddleware):
    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()
        except DisallowedHost:  # the 400 for a bad Host header: no websocket to name
            return parts
        update = dict(parts.update or {})
        websocket = f"{'wss' if request.is_secure() else 'ws'}://{host}"
        update["connect-src"] = [*update.get("connect-src", ()), websocket]
        parts.update = update
        return parts
