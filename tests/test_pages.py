"""The dashboard pages as Django serves them; tests/test_browser.py drives them in Chromium."""
import json
import re

import pytest
from django.contrib.auth.models import Group


@pytest.fixture
def sensor(make_user, make_device):
    return make_device("sensor-1", make_user("owner"), name="Boiler room")


@pytest.mark.parametrize("path", ["/", "/devices/sensor-1/", "/alarms/"])
def test_pages_send_anonymous_visitors_to_sign_in(client, sensor, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_another_users_device_page_is_404(client, sensor, make_user):
    client.force_login(make_user("stranger"))
    assert client.get("/devices/sensor-1/").status_code == 404


@pytest.fixture
def member(sensor, make_user):
    """A member of a group the sensor is shared with: may watch it, not command it."""
    watchers = Group.objects.create(name="watchers")
    sensor.groups.add(watchers)
    user = make_user("member")
    user.groups.add(watchers)
    return user


def test_the_device_page_offers_commands_to_the_owner_only(client, sensor, member):
    client.force_login(sensor.owner)
    page = client.get("/devices/sensor-1/").content.decode()
    assert 'id="command-form"' in page
    config = json.loads(re.search(r'<script id="page-config" type="application/json">(.*?)</script>', page).group(1))
    assert config["device"] == "sensor-1" and config["canCommand"] is True

    client.force_login(member)
    page = client.get("/devices/sensor-1/").content.decode()
    assert 'id="command-form"' not in page and "may watch this device but not command it" in page


def test_the_pages_static_files_are_served_by_the_hub(client, sensor):
    client.force_login(sensor.owner)
    page = client.get("/devices/sensor-1/").content.decode()
    scripts = re.findall(r'src="(/static/[^"]+)"', page) + re.findall(r'href="(/static/[^"]+)"', page)
    assert scripts
    for path in scripts:
        response = client.get(path)
        assert response.status_code == 200, path
        assert b"".join(response.streaming_content if response.streaming else [response.content])


def test_the_device_page_offers_alarm_rules_to_change_to_the_owner_only(client, sensor, member):
    client.force_login(sensor.owner)
    page = client.get("/devices/sensor-1/").content.decode()
    assert 'id="rule-form"' in page and 'id="device-alarms"' in page
    assert 'href="/alarms/?device=sensor-1"' in page

    client.force_login(member)
    page = client.get("/devices/sensor-1/").content.decode()
    assert 'id="rule-form"' not in page and 'id="device-alarms"' in page


def test_the_alarms_page_knows_whose_alarms_the_user_may_clear(client, sensor, make_user):
    client.force_login(sensor.owner)
    page = client.get("/alarms/").content.decode()
    config = json.loads(re.search(r'<script id="page-config" type="application/json">(.*?)</script>', page).group(1))
    assert config == {"clearable": ["sensor-1"]}
    assert 'href="/alarms/"' in page  # in the navigation
    client.force_login(make_user("stranger"))
    page = client.get("/alarms/").content.decode()
    assert '{"clearable": []}' in page
