"""API tokens: made on the tokens page or with manage.py apitoken, kept only as a digest."""
import io
import re

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiToken
from accounts.tokens import digest


@pytest.fixture
def owner(make_user):
    return make_user("owner")


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_the_tokens_page_shows_a_new_token_once_and_stores_only_its_digest(client, owner):
    client.force_login(owner)
    page = client.post("/account/tokens/", {"name": "grafana"}).content.decode()
    token = re.search(r'id="new-token">([^<]+)<', page).group(1)
    stored = ApiToken.objects.get(user=owner)
    assert stored.name == "grafana" and stored.digest == digest(token) and token not in stored.digest
    assert client.get("/api/devices/", headers=bearer(token)).status_code == 200
    assert token not in client.get("/account/tokens/").content.decode()


def test_a_token_without_a_name_is_refused_with_a_reason(client, owner):
    client.force_login(owner)
    response = client.post("/account/tokens/", {"name": "  "})
    assert response.status_code == 400
    assert "Give the token a name" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_revoking_on_the_page_stops_the_token(client, owner):
    client.force_login(owner)
    page = client.post("/account/tokens/", {"name": "ci"}).content.decode()
    token = re.search(r'id="new-token">([^<]+)<', page).group(1)
    stored = ApiToken.objects.get()
    assert client.post(f"/account/tokens/{stored.pk}/revoke/").status_code == 302
    assert client.get("/api/devices/", headers=bearer(token)).status_code == 401


def test_no_one_revokes_another_users_token(client, owner, make_user):
    client.force_login(owner)
    client.post("/account/tokens/", {"name": "mine"})
    stored = ApiToken.objects.get()
    client.force_login(make_user("stranger"))
    assert client.post(f"/account/tokens/{stored.pk}/revoke/").status_code == 404
    stored.refresh_from_db()
    assert stored.active


def test_the_tokens_page_needs_a_signed_in_user(client):
    response = client.get("/account/tokens/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_management_command_makes_lists_and_revokes_tokens(client, owner):
    out = io.StringIO()
    call_command("apitoken", "create", "owner", "--name", "backup", stdout=out, stderr=io.StringIO())
    token = out.getvalue().strip()
    assert client.get("/api/devices/", headers=bearer(token)).status_code == 200

    listing = io.StringIO()
    call_command("apitoken", "list", "owner", stdout=listing)
    token_id, prefix, name, state = listing.getvalue().strip().split("\t")
    assert (prefix, name, state) == (token[:8] + "…", "backup", "active")

    call_command("apitoken", "revoke", token_id, stdout=io.StringIO())
    assert client.get("/api/devices/", headers=bearer(token)).status_code == 401


def test_the_management_command_names_a_missing_user(transactional_db):
    with pytest.raises(CommandError, match="No user 'nobody'"):
        call_command("apitoken", "create", "nobody", "--name", "x")
