"""Failed sign-ins are limited per username and address, per address and per username, through
the real sign-in forms (the hub's and the admin's); a last test over a real daphne and Redis."""
import re

import pytest
import redis
from django.core.cache import cache
from django.test import Client

from accounts import signin_limits
from tests.conftest import PASSWORD
from tests.live import unique_id

LOGIN = "/accounts/login/"
WINDOW = 900


@pytest.fixture(autouse=True)
def small_limits(settings):
    settings.SIGNIN_WINDOW_SECONDS = WINDOW
    settings.SIGNIN_LIMITS = {"username_and_address": 3, "address": 6, "username": 10}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def alice(make_user):
    return make_user("alice")


def sign_in(username, password, address, path=LOGIN):
    client = Client(REMOTE_ADDR=address)
    return client.post(path, {"username": username, "password": password})


def signed_in(response):
    return response.status_code == 302 and "_auth_user_id" in response.client.session


def fail(times, username, address):
    for _ in range(times):
        assert sign_in(username, "wrong", address).status_code == 200  # the form again, with its error


def test_a_wrong_password_shows_the_form_again(alice):
    response = sign_in("alice", "wrong", "10.0.0.1")
    assert response.status_code == 200 and b"didn't match" in response.content


def test_after_too_many_failures_from_one_address_even_the_right_password_waits(alice):
    fail(3, "alice", "10.0.0.1")
    response = sign_in("alice", PASSWORD, "10.0.0.1")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= WINDOW
    assert b"Too many failed sign-ins" in response.content
    assert re.search(rb"Try again in \d+ minutes?", response.content)


def test_the_owner_signs_in_from_elsewhere_while_one_address_is_refused(alice):
    fail(3, "alice", "10.0.0.1")
    assert sign_in("alice", PASSWORD, "10.0.0.1").status_code == 429
    assert signed_in(sign_in("alice", PASSWORD, "10.0.0.2"))


def test_one_address_trying_many_accounts_is_refused_for_all(alice, make_user):
    for name in ("bob", "carol", "dave"):
        fail(2, name, "10.0.0.1")
    assert sign_in("alice", PASSWORD, "10.0.0.1").status_code == 429
    assert signed_in(sign_in("alice", PASSWORD, "10.0.0.2"))


def test_many_addresses_guessing_one_account_lock_it_for_the_window(alice):
    for host in range(5):
        fail(2, "alice", f"10.0.1.{host}")
    assert sign_in("alice", PASSWORD, "10.0.0.9").status_code == 429
    assert sign_in("bob", "wrong", "10.0.0.9").status_code == 200  # other names are still checked


def test_usernames_count_whatever_their_case_and_spaces(alice):
    fail(1, "alice", "10.0.0.1")
    fail(1, "ALICE", "10.0.0.1")
    fail(1, " Alice ", "10.0.0.1")
    assert sign_in("alice", PASSWORD, "10.0.0.1").status_code == 429


def test_a_successful_sign_in_clears_its_count(alice):
    fail(2, "alice", "10.0.0.1")
    assert signed_in(sign_in("alice", PASSWORD, "10.0.0.1"))
    fail(2, "alice", "10.0.0.1")
    assert signed_in(sign_in("alice", PASSWORD, "10.0.0.1"))


def test_the_count_ends_a_window_after_its_first_failure(alice):
    first = 1_800_000_000.0
    for _ in range(3):
        signin_limits.record_failure("alice", "10.0.0.1", first)
    assert signin_limits.retry_after("alice", "10.0.0.1", first) == WINDOW
    assert signin_limits.retry_after("alice", "10.0.0.1", first + WINDOW - 1) == 1
    assert signin_limits.retry_after("alice", "10.0.0.1", first + WINDOW) == 0


def test_failures_on_either_side_of_a_clock_boundary_add_up(alice):
    border = 1_800_000_000.0  # a multiple of the window: where a fixed window would end
    signin_limits.record_failure("alice", "10.0.0.1", border - 1)
    signin_limits.record_failure("alice", "10.0.0.1", border - 1)
    signin_limits.record_failure("alice", "10.0.0.1", border + 1)
    assert signin_limits.retry_after("alice", "10.0.0.1", border + 1) == WINDOW - 2


def test_the_admin_sign_in_is_limited_too(make_user):
    make_user("root", is_staff=True, is_superuser=True)
    for _ in range(3):
        assert sign_in("root", "wrong", "10.0.0.1", "/admin/login/").status_code == 200
    response = sign_in("root", PASSWORD, "10.0.0.1", "/admin/login/")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0


def test_reading_the_form_is_never_refused(alice):
    fail(3, "alice", "10.0.0.1")
    assert Client(REMOTE_ADDR="10.0.0.1").get(LOGIN).status_code == 200


def test_while_redis_is_unreachable_sign_ins_go_on_unlimited_and_the_log_says_so(alice, settings, caplog):
    from tests.servers import free_port

    kept = settings.CACHES
    settings.CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
    }}
    try:
        fail(4, "alice", "10.0.0.1")
        assert signed_in(sign_in("alice", PASSWORD, "10.0.0.1"))
    finally:
        settings.CACHES = kept
    assert "sign-in limits not applied: Redis is unreachable" in caplog.text


@pytest.mark.live
def test_over_a_real_daphne_the_counts_are_kept_in_redis(live_hub, make_user, redis_server):
    """The hub's processes count in Redis (HUB_REDIS_URL), so every web process sees the same counts."""
    username = unique_id("mallory")
    make_user(username)
    for _ in range(5):  # the default limit per username and address
        assert live_hub.sign_in(username, "wrong")[0].status == 200
    response, cookies = live_hub.sign_in(username, PASSWORD)
    assert response.status == 429 and 0 < int(response.headers["Retry-After"]) <= 900
    assert b"Too many failed sign-ins" in response.body
    assert not any(cookie.name == "sessionid" for cookie in cookies)
    assert redis.Redis.from_url(redis_server.url).keys("telehub:*signin:username_and_address:*")
