from django.middleware.csrf import CsrfViewMiddleware
from ninja.errors import AuthenticationError, HttpError
from ninja.security import HttpBearer
from ninja.security.session import SessionAuth as NinjaSessionAuth

from accounts.tokens import user_for_token


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` for scripts; the API's views see the token's user.

    A token that does not work is refused outright rather than passed over for the session:
    a script must not act as whoever happens to be signed in."""

    def authenticate(self, request, token):
        user = user_for_token(token)
        if user is None:
            raise AuthenticationError(message="unknown or revoked token")
        request.user = user
        return user


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, giving its reason for a refusal instead of a page."""

    def _reject(self, request, reason):
        return reason


class SessionAuth(NinjaSessionAuth):
    """The browser's session, with Django's CSRF check on requests that change things: a page
    of another site cannot use a signed-in browser's cookie. A refusal is a 403 that says why."""

    def _get_key(self, request):
        if not request.user.is_authenticated:
            return None  # no session to misuse: a 401, as for any caller who has not signed in
        check = _CsrfCheck(lambda request: None)
        check.process_request(request)
        refusal = check.process_view(request, None, (), {})
        if refusal:
            raise HttpError(403, f"CSRF check failed: {refusal}")
        return request.COOKIES.get(self.param_name)
