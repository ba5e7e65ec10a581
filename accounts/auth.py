from ninja.errors import AuthenticationError
from ninja.security import HttpBearer

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
