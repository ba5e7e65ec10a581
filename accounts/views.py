import math
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts import signin_limits
from accounts.metrics import SIGNINS_THROTTLED
from accounts.tokens import issue_token, revoke


@login_required
def tokens(request):
    """The user's API tokens; a POST makes a new one, shown on this page once."""
    new_token = None
    error = None
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        if not name or len(name) > 100:
            error = "Give the token a name of at most 100 characters."
        else:
            _, new_token = issue_token(request.user, name)
    context = {"tokens": request.user.api_tokens.all(), "new_token": new_token, "error": error}
    return render(request, "accounts/tokens.html", context, status=400 if error else 200)


@login_required
@require_POST
def revoke_token(request, token_id):
    get_object_or_404(request.user.api_tokens, pk=token_id)
    revoke(request.user.api_tokens.filter(pk=token_id))
    return redirect("tokens")


def limit_sign_ins(view):
    """A sign-in view that answers 429 with Retry-After, before checking the password, while the
    username or the client address has had too many failures (accounts/signin_limits.py)."""

    @wraps(view)
    def sign_in(request, *args, **kwargs):
        if request.method == "POST":
            wait = signin_limits.retry_after(request.POST.get("username", ""), signin_limits.client_address(request))
            if wait:
                SIGNINS_THROTTLED.inc()
                context = {"minutes": math.ceil(wait / 60)}
                response = render(request, "registration/signin_limited.html", context, status=429)
                response["Retry-After"] = str(wait)
                return response
        return view(request, *args, **kwargs)

    return sign_in
