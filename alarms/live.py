"""Alarm frames to the dashboards that watch the alarm's device. Placeholder: the evaluation
work replaces this with the real fan-out (an `alarm` frame to ws/fleet/ and ws/devices/<id>/)."""


def announce(alarm):
    """Sends `alarm`'s new state to the sockets watching its device."""
