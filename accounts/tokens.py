"""Making, checking and revoking API tokens.

Tokens are 256 random bits, so a plain SHA-256 digest is enough to keep them safe at rest: a
slow password hash would only slow down every API call."""
import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from accounts.models import ApiToken

TOKEN_PREFIX = "thk_"
LAST_USED_PRECISION = timedelta(minutes=1)


def digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user, name):
    """A new token for `user`: returns the stored ApiToken and the token, which is not kept."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    stored = ApiToken.objects.create(user=user, name=name, prefix=token[: len(TOKEN_PREFIX) + 4], digest=digest(token))
    return stored, token


def user_for_token(token):
    """The active user a token belongs to, or None if it is unknown or revoked."""
    stored = (
        ApiToken.objects.select_related("user")
        .filter(digest=digest(token), revoked__isnull=True, user__is_active=True)
        .first()
    )
    if stored is None:
        return None
    now = timezone.now()
    if stored.last_used is None or now - stored.last_used > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=stored.pk).update(last_used=now)
    return stored.user


def revoke(tokens):
    """Revokes the given tokens (a queryset); returns how many were active."""
    return tokens.filter(revoked__isnull=True).update(revoked=timezone.now())
