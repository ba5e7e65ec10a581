from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

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
