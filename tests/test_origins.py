"""Origin checks: a page of another site can neither open a signed-in websocket (hub/origins.py)
nor use a signed-in browser's session on the API (accounts.auth.SessionAuth)."""
import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from hub.asgi import application
from hub.origins import origin_allowed


def handshake(origin=None, host="localhost:8000"):
    headers = {b"host": host.encode()}
    if origin is not None:
        headers[b"origin"] = origin.encode()
    return headers


@pytest.mark.parametrize("origin, host, allowed", [
    ("http://localhost:8000", "localhost:8000", True),
    ("http://127.0.0.1", "127.0.0.1", True),
    ("http://evil.example", "localhost:8000", False),
    ("http://localhost:9999", "localhost:8000", False),  # another site on the same host
    ("https://localhost:8000", "localhost:8000", False),  # the hub is not served over https
    ("null", "localhost:8000", False),
    (None, "localhost:8000", False),
    ("http://evil.example", "evil.example", False),  # a host the hub does not answer to
    ("http://localhost:8000", "", False),
])
def test_only_the_hubs_own_origin_may_open_a_socket(origin, host, allowed):
    assert origin_allowed(handshake(origin, host)) is allowed


def test_behind_tls_the_hubs_origin_is_https(settings):
    settings.HTTPS = True
    settings.ALLOWED_HOSTS = ["hub.example.com"]
    assert origin_allowed(handshake("https://hub.example.com", "hub.example.com"))
    assert not origin_allowed(handshake("http://hub.example.com", "hub.example.com"))


def test_a_trusted_origin_may_open_a_socket(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://ops.example.com"]
    assert origin_allowed(handshake("https://ops.example.com"))
    assert not origin_allowed(handshake("https://ops.example.com:8443"))


@pytest.mark.django_db
async def test_a_signed_in_socket_from_another_port_of_the_same_host_is_refused():
    communicator = WebsocketCommunicator(
        application, "/ws/fleet/", headers=[(b"origin", b"http://localhost:9999"), (b"host", b"localhost:8000")]
    )
    connected, _ = await communicator.connect()
    assert not connected


@pytest.fixture
def browser(make_user, make_device):
    """A signed-in browser that enforces CSRF as a real one meets it, with its CSRF token."""
    owner = make_user("owner")
    make_device("sensor-1", owner)
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    client.get("/devices/sensor-1/")  # the page sets the csrftoken cookie
    return client, client.cookies["csrftoken"].value


def send_command(client, token, **headers):
    return client.post(
        "/api/devices/sensor-1/commands/", {"name": "reboot"}, content_type="application/json",
        HTTP_X_CSRFTOKEN=token, **headers,
    )


def test_the_hubs_own_page_may_send_a_command(browser):
    client, token = browser
    assert send_command(client, token, HTTP_ORIGIN="http://testserver").status_code == 201


def test_a_page_of_another_site_may_not_use_the_session(browser):
    client, token = browser
    response = send_command(client, token, HTTP_ORIGIN="http://evil.example")
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "CSRF check failed: Origin checking failed - http://evil.example does not match any trusted origins."
    )


def test_a_call_without_the_csrf_token_is_refused_with_the_reason(browser):
    client, _ = browser
    response = client.post("/api/devices/sensor-1/commands/", {"name": "reboot"}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["detail"] == "CSRF check failed: CSRF token missing."


def test_a_script_with_a_token_needs_no_csrf_token(make_user, make_device):
    from accounts.tokens import issue_token

    owner = make_user("owner")
    make_device("sensor-1", owner)
    _, token = issue_token(owner, "script")
    response = Client(enforce_csrf_checks=True).post(
        "/api/devices/sensor-1/commands/", {"name": "reboot"}, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_ORIGIN="http://evil.example",
    )
    assert response.status_code == 201


def test_without_a_session_a_post_is_a_401_not_a_csrf_refusal(db):
    response = Client(enforce_csrf_checks=True).post("/api/devices/sensor-1/commands/", {}, content_type="application/json")
    assert response.status_code == 401


def test_a_host_the_hub_does_not_serve_is_refused(db):
    assert Client().get("/healthz", HTTP_HOST="evil.example").status_code == 400
    assert Client().get("/healthz", HTTP_HOST="localhost").status_code == 200
