"""Refuses websockets that pages of other sites open (cross-site websocket hijacking).

A browser sends the hub's session cookie with any page's websocket handshake, and the page's
origin with it. A socket is accepted only from the hub's own origin — the scheme the hub is
served over (https with HUB_HTTPS) and the Host asked for, itself one of ALLOWED_HOSTS — or from
one of HUB_TRUSTED_ORIGINS: the rule Django's CSRF check applies to forms and API calls. A
handshake without an origin is refused too; browsers always send one.
"""
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def origin_allowed(headers):
    """Whether a handshake with these headers (a dict of lower-case byte names) may go on."""
    origin = headers.get(b"origin", b"").decode("latin1")
    host = headers.get(b"host", b"").decode("latin1")
    if not origin:
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    return origin == f"{'https' if settings.HTTPS else 'http'}://{host}"


class SameOriginValidator:
    """ASGI middleware for websockets: only handshakes whose origin_allowed() reach the app."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if not origin_allowed(dict(scope.get("headers", ()))):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
