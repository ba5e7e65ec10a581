"""The dashboard pages in real headless Chromium, against the hub's own processes (daphne and the
bridge) on throwaway Redis and Mosquitto, with devices publishing over MQTT."""
import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from alarms.models import Alarm, AlarmChange, AlarmRule
from telemetry.models import Reading
from tests.conftest import PASSWORD, running, running_hub
from tests.live import TIMEOUT, Device, unique_id, wait_until
from tests.servers import MosquittoServer, RedisServer

pytestmark = pytest.mark.live

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
expect.set_options(timeout=TIMEOUT * 1000)


@pytest.fixture(scope="module")
def chromium():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("Debian's chromium package is missing: scripts/test installs it")
    # Playwright's sync API keeps an event loop on this thread, which makes Django refuse the
    # ORM calls the tests make between browser steps; they are plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        # Chromium's sandbox cannot start as root, which CI machines run as.
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def owner(make_user):
    return make_user(unique_id("operator"))


@pytest.fixture
def device(make_device, owner):
    return make_device(unique_id("boiler"), owner, name="Boiler room")


@pytest.fixture
def signed_in(chromium, live_hub, owner):
    """A browser page signed in as the device's owner through the login form."""
    context = chromium.new_context(base_url=live_hub.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT * 1000)
    page = context.new_page()
    sign_in(page, owner.username)
    yield page
    context.close()


def sign_in(page, username):
    page.goto("/")
    expect(page).to_have_url("/accounts/login/?next=/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def test_the_fleet_page_shows_a_device_going_online_when_it_connects(signed_in, live_hub, device):
    signed_in.goto("/")
    row = signed_in.locator(f'tr[data-device="{device.id}"]')
    expect(row.locator(".status")).to_have_text("offline")
    expect(row.get_by_role("link")).to_have_text("Boiler room")  # the name, the id below it
    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    expect(row.locator(".status")).to_have_text("online")
    sensor.send_reading({"temp": 21.5, "hum": 40})
    expect(row.locator(".values")).to_contain_text("temp21.5")

    signed_in.get_by_label("Filter by status").select_option("offline")
    expect(row).to_be_hidden()
    signed_in.get_by_label("Filter by status").select_option("all")
    signed_in.get_by_label("Search devices").fill("boiler room")
    expect(row).to_be_visible()
    signed_in.get_by_label("Search devices").fill("no such device")
    expect(row).to_be_hidden()
    signed_in.get_by_label("Search devices").fill("")
    screenshot(signed_in, "fleet")
    sensor.go_offline()
    expect(row.locator(".status")).to_have_text("offline")


def test_a_reading_published_over_mqtt_reaches_the_chart_and_latest_values(signed_in, live_hub, device):
    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    sensor.send_reading({"temp": 20.0})
    signed_in.goto(f"/devices/{device.id}/")
    chart = signed_in.locator('canvas[data-key="temp"]')
    expect(chart).to_have_attribute("data-points", "1")  # history from the API

    sensor.send_reading({"temp": 21.5, "door": True})
    expect(signed_in.locator('#latest tr[data-key="temp"] td').first).to_have_text("21.5")
    expect(signed_in.locator('#latest tr[data-key="door"] td').first).to_have_text("on")
    expect(chart).to_have_attribute("data-points", "2")
    expect(chart).to_have_attribute("data-last", "21.5")
    expect(signed_in.locator("#status")).to_have_text("online")
    sensor.go_offline()
    expect(signed_in.locator("#status")).to_have_text("offline")


def test_a_command_from_the_page_reaches_the_device_and_its_result_shows(signed_in, live_hub, device):
    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    for value in (20.5, 20.9, 21.4, 21.2):
        sensor.send_reading({"temp": value, "hum": 41})
    signed_in.goto(f"/devices/{device.id}/")
    expect(signed_in.locator('canvas[data-key="temp"]')).to_have_attribute("data-points", "4")

    signed_in.get_by_label("Name").fill("set_interval")
    signed_in.get_by_label("Params (JSON)").fill('{"seconds": 5}')
    signed_in.get_by_role("button", name="Send").click()
    command = sensor.next_command()
    assert (command["name"], command["params"]) == ("set_interval", {"seconds": 5})
    item = signed_in.locator(f'li[data-command="{command["id"]}"]')
    expect(item).to_have_attribute("data-status", "sent")
    sensor.answer(command["id"], result={"interval": 5})
    expect(item).to_have_attribute("data-status", "succeeded")
    expect(item.locator(".outcome")).to_have_text('{"interval":5}')
    screenshot(signed_in, "device")

    params_are_refused(signed_in, sensor, "{not json", "Params:")
    sensor.go_offline()


def params_are_refused(page, sensor, params, error):
    """Sends a command with these params from the device page: the page shows `error`, and
    nothing reaches the device."""
    page.get_by_label("Params (JSON)").fill(params)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#command-error")).to_contain_text(error)
    sensor.no_command(within=0.5)


def test_a_command_the_device_never_answers_shows_expired_with_its_reason(signed_in, live_hub, device):
    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    signed_in.goto(f"/devices/{device.id}/")
    expect(signed_in.locator("#status")).to_have_text("online")

    signed_in.get_by_label("Name").fill("reboot")
    signed_in.get_by_label("Timeout (seconds)").fill("1")
    signed_in.get_by_role("button", name="Send").click()
    command = sensor.next_command()  # and never answered
    item = signed_in.locator(f'li[data-command="{command["id"]}"]')
    expect(item).to_have_attribute("data-status", "expired")
    expect(item.locator(".outcome")).to_have_text("sent, but no answer within its timeout of 1 s")
    expect(item).to_contain_text("timeout 1 s")

    # Params the hub could not send are refused where they are typed in.
    params_are_refused(signed_in, sensor, '{"n": 1e300}', "params: n: a number beyond")
    sensor.go_offline()


def test_a_device_given_to_another_owner_leaves_the_open_fleet_page(signed_in, device, make_user):
    signed_in.goto("/")
    row = signed_in.locator(f'tr[data-device="{device.id}"]')
    expect(row).to_be_visible()
    device.owner = make_user(unique_id("new-owner"))
    device.save()
    expect(row).to_have_count(0)  # within the re-check's 5 s (the page's timeout is longer)
    expect(signed_in.locator("#banner")).to_contain_text("forbidden")


def test_another_user_cannot_open_the_device_page(chromium, live_hub, device, make_user):
    stranger = make_user(unique_id("stranger"))
    context = chromium.new_context(base_url=live_hub.url)
    page = context.new_page()
    sign_in(page, stranger.username)
    expect(page.locator(f'tr[data-device="{device.id}"]')).to_have_count(0)
    response = page.goto(f"/devices/{device.id}/")
    assert response.status == 404
    context.close()


@pytest.fixture
def own_redis(tmp_path):
    """A Redis for one test alone, so killing it harms no other test."""
    (tmp_path / "redis").mkdir()
    yield from running(RedisServer(tmp_path / "redis"))


@pytest.fixture
def hub_on_own_redis(django_db_setup, own_redis, tmp_path):
    """A hub with its own servers: on the shared broker, the module's hub would store each reading too."""
    (tmp_path / "mosquitto").mkdir()
    (tmp_path / "hub").mkdir()
    for broker in running(MosquittoServer(tmp_path / "mosquitto")):
        yield from running_hub(own_redis, broker, tmp_path / "hub")


def test_after_a_break_in_the_live_stream_the_device_page_fetches_what_it_missed(
    chromium, hub_on_own_redis, own_redis, device, owner
):
    hub = hub_on_own_redis
    context = chromium.new_context(base_url=hub.url)
    context.set_default_timeout(TIMEOUT * 1000)
    page = context.new_page()
    sign_in(page, owner.username)
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    sensor.send_reading({"temp": 20.0})
    page.goto(f"/devices/{device.id}/")
    chart = page.locator('canvas[data-key="temp"]')
    expect(chart).to_have_attribute("data-points", "1")

    web_log = len(hub.web.log())
    own_redis.kill()
    hub.web.wait_for_log(r"live relay: the live stream is broken", start=web_log)
    for value in (20.5, 21.0, 21.5):
        sensor.send_reading({"temp": value})
    wait_until(lambda: Reading.objects.filter(device=device).count() == 4, message="readings stored while Redis is down")
    expect(chart).to_have_attribute("data-points", "1")  # none of them came live

    own_redis.start()
    # The fresh snapshot after the break shows the page it missed readings; it fetches them.
    expect(chart).to_have_attribute("data-points", "4")
    expect(chart).to_have_attribute("data-last", "21.5")
    sensor.go_offline()
    context.close()


# Alarms.

HOSTILE = '<img src=x onerror="window.pwned = 1">'


def raise_alarm(rule, sensor):
    """Raises `rule`'s alarm from MQTT: the device sends a reading that crosses it (again, until
    the bridge, which loads new rules within a second, has judged one) and the alarm is in the
    database."""
    def raised():
        sensor.send_reading({"temp": 91.5})
        return Alarm.objects.filter(rule=rule, device_id=sensor.device_id).first()

    alarm = wait_until(raised, interval=0.5, message="the alarm raised by a reading over MQTT")
    return Alarm.objects.select_related("rule", "acknowledged_by").get(pk=alarm.pk)


def test_an_alarm_raised_from_mqtt_arrives_live_is_acknowledged_with_a_comment_and_cleared(signed_in, live_hub, device):
    rule = AlarmRule.objects.create(owner=device.owner, name=f"{HOSTILE} too hot", kind="threshold", key="temp", op=">", value=80)
    rule.devices.set([device])
    fleet = signed_in
    fleet.goto("/")
    fleet_row = fleet.locator(f'tr[data-device="{device.id}"]')
    expect(fleet_row.locator(".status")).to_have_text("offline")  # the socket watches the device
    expect(fleet_row.locator(".severity")).to_be_hidden()

    page = fleet.context.new_page()
    page.goto("/")
    page.get_by_role("link", name="Alarms").click()
    expect(page.locator("#alarms")).to_have_attribute("data-live", "true")
    expect(page.locator("#empty")).to_be_visible()

    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    alarm = raise_alarm(rule, sensor)
    row = page.locator(f'tr[data-alarm="{alarm.pk}"]')
    expect(row).to_have_attribute("data-state", "active")
    expect(row).to_contain_text(f"{HOSTILE} too hot")  # as text, never as markup
    expect(row.locator(".severity")).to_have_text("major")
    expect(fleet_row.locator(".severity")).to_have_text("major")

    row.get_by_label("Comment").fill("<b>on it</b>")
    row.get_by_role("button", name="Acknowledge").click()
    expect(row).to_have_attribute("data-acknowledged", "true")
    expect(row).to_contain_text(f"acknowledged by {device.owner.username}")
    assert AlarmChange.objects.get(alarm=alarm, event="acknowledged").comment == "<b>on it</b>"
    screenshot(page, "alarms")

    row.get_by_role("button", name="Clear").click()
    expect(row).to_have_attribute("data-state", "cleared")
    page.get_by_label("Filter by state").select_option("active")
    expect(row).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/alarms/\?state=active$"))

    # The device page lists the alarm and its rule, names and all as text.
    page.goto(f"/devices/{device.id}/")
    expect(page.locator(f'#device-alarms li[data-alarm="{alarm.pk}"]')).to_contain_text(f"{HOSTILE} too hot")
    expect(page.locator(f'#rules li[data-rule="{rule.pk}"]')).to_contain_text("temp > 80")
    assert page.evaluate("window.pwned") is None and fleet.evaluate("window.pwned") is None
    page.close()
    sensor.go_offline()


def test_the_owner_adds_and_changes_an_alarm_rule_on_the_device_page(signed_in, device):
    signed_in.goto(f"/devices/{device.id}/")
    signed_in.get_by_label("Rule", exact=True).fill("Too cold")
    signed_in.get_by_label("Key", exact=True).fill("temp")
    signed_in.get_by_label("Operator").select_option("<")
    signed_in.get_by_label("Limit", exact=True).fill("5")
    signed_in.get_by_role("button", name="Add rule").click()
    item = signed_in.locator("#rules li", has_text="Too cold")
    expect(item).to_contain_text("temp < 5")
    rule = AlarmRule.objects.get(name="Too cold")
    assert list(rule.devices.values_list("pk", flat=True)) == [device.id]

    item.get_by_role("button", name="Edit").click()
    signed_in.get_by_label("Kind").select_option("offline")
    signed_in.get_by_label("After (s)").fill("60")
    signed_in.get_by_role("button", name="Save rule").click()
    expect(item).to_contain_text("offline for 60 s")
    rule.refresh_from_db()
    assert (rule.kind, rule.seconds, rule.key) == ("offline", 60, "")

    # A limit the API refuses says why, next to the form.
    signed_in.get_by_label("Rule", exact=True).fill("Bad")
    signed_in.get_by_label("Kind").select_option("threshold")
    signed_in.get_by_label("Key", exact=True).fill("temp")
    signed_in.get_by_label("Limit", exact=True).fill("5")
    signed_in.get_by_label("Clears at (optional)").fill("9")  # above a limit of > 5
    signed_in.get_by_role("button", name="Add rule").click()
    expect(signed_in.locator("#rule-error")).to_contain_text("clear_value")
