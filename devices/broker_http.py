"""HTTP authentication and authorization for a clustered broker (EMQX 5's HTTP authn and authz
backends), answered from the same rules as Mosquitto's files (devices.broker_rules).

The broker proves itself with `Authorization: Bearer HUB_BROKER_HTTP_AUTH_TOKEN`; without that
setting the routes do not exist (404). Bodies are JSON objects of at most MAX_BODY_BYTES, each
field a bounded string (EMQX renders its placeholders as strings). A bad request is a 4xx
naming the field, which EMQX treats as `ignore`: with no other source after this one, refused.
Failed logins are counted and limited like web sign-ins (accounts.signin_limits), per username
and per the device's address (`peerhost`), so the endpoint is no faster a password oracle than
the sign-in form. docs/deployment.md has the EMQX configuration.
"""
import hmac
import json

from django.conf import settings
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts import signin_limits
from devices import broker_rules
from devices.metrics import BROKER_HTTP_CHECKS

MAX_BODY_BYTES = 4096
MAX_FIELD_CHARS = {"username": 256, "password": 1024, "clientid": 256, "peerhost": 64, "topic": 1024, "action": 16}
ACTIONS = {"publish": broker_rules.WRITE, "subscribe": broker_rules.READ}
# Failed broker logins count apart from web sign-ins of the same name.
LIMIT_NAMESPACE = "mqtt:"


class BadRequest(Exception):
    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def broker_check(check):
    """A view the broker calls: the shared secret checked, the body read and bounded, the answer counted."""

    def decorate(view):
        @csrf_exempt
        @require_POST
        def checked(request):
            secret = settings.BROKER_HTTP_AUTH_TOKEN
            if not secret:
                raise Http404("HUB_BROKER_HTTP_AUTH_TOKEN is not set")
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            given = given if scheme == "Bearer" else ""
            if not hmac.compare_digest(given.encode(), secret.encode()):
                BROKER_HTTP_CHECKS.labels(check, "unauthorized").inc()
                return JsonResponse({"detail": "Authorization: Bearer <HUB_BROKER_HTTP_AUTH_TOKEN> is required"}, status=401)
            try:
                result, extra = view(request, _body(request))
            except BadRequest as error:
                BROKER_HTTP_CHECKS.labels(check, "bad_request").inc()
                return JsonResponse({"detail": error.reason}, status=error.status)
            BROKER_HTTP_CHECKS.labels(check, result).inc()
            return JsonResponse({"result": "allow" if result == "allow" else "deny", **extra})

        return checked

    return decorate


@broker_check("authn")
def authn(request, body):
    """EMQX's HTTP authentication: may this username log in with this password?"""
    username, password = _text(body, "username"), _text(body, "password")
    address = _text(body, "peerhost")
    limited_name = LIMIT_NAMESPACE + username
    if signin_limits.retry_after(limited_name, address):
        return "limited", {"is_superuser": False}
    if not broker_rules.password_matches(username, password):
        signin_limits.record_failure(limited_name, address)
        return "deny", {"is_superuser": False}
    signin_limits.clear_username_and_address(limited_name, address)
    return "allow", {"is_superuser": False}


@broker_check("authz")
def authz(request, body):
    """EMQX's HTTP authorization: may this login publish to, or subscribe to, this topic?"""
    username, topic, action = _text(body, "username"), _text(body, "topic"), _text(body, "action")
    if action not in ACTIONS:
        raise BadRequest(400, f"action must be publish or subscribe, not {action[:20]!r}")
    allowed = broker_rules.may(username, ACTIONS[action], topic)
    return ("allow" if allowed else "deny"), {}


def _body(request):
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise BadRequest(400, "Content-Length is not a number")
    if length > MAX_BODY_BYTES:
        raise BadRequest(413, f"the body is over {MAX_BODY_BYTES} bytes")
    if request.content_type != "application/json":
        raise BadRequest(415, "the body must be JSON (Content-Type: application/json)")
    raw = request.body
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(413, f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest(400, "the body is not JSON")
    if not isinstance(body, dict):
        raise BadRequest(400, "the body must be a JSON object")
    return body


def _text(body, field):
    value = body.get(field)
    if not isinstance(value, str):
        raise BadRequest(400, f"{field} is required, as a string")
    if len(value) > MAX_FIELD_CHARS[field]:
        raise BadRequest(400, f"{field} is over {MAX_FIELD_CHARS[field]} characters")
    return value
