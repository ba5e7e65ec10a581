"""Adds or removes the alarms benches' threshold rules: one per bench device, on `temp`, never
met by the publisher's values (15-25), so what bench.run's alarms scenario measures is
evaluation, not alarms raised; and, for bench.alarm_latency, `--held N` rules on `heat` that
must hold for_seconds, on the first N devices.

Run by the benches in the hub's environment:
python -m bench.alarm_rules --devices N [--held N --for-seconds S] | --remove"""
import argparse
import os

import django

NAME = "bench threshold"
HELD_NAME = "bench held"
VALUE = 100  # both rules are met above it


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--held", type=int, default=0)
    parser.add_argument("--for-seconds", type=int, default=2)
    parser.add_argument("--remove", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()

    from django.contrib.auth import get_user_model

    from alarms.models import AlarmRule
    from bench.prepare import device_ids

    AlarmRule.objects.filter(name__in=[NAME, HELD_NAME]).delete()
    if args.remove:
        return
    operator = get_user_model().objects.get(username="bench")
    made = {
        "temp": (NAME, device_ids(args.devices), {"clear_value": 90}),
        "heat": (HELD_NAME, device_ids(args.held), {"for_seconds": args.for_seconds}),
    }
    through = AlarmRule.devices.through
    for key, (name, devices, fields) in made.items():
        rules = AlarmRule.objects.bulk_create(
            [AlarmRule(owner=operator, name=name, kind="threshold", key=key, op=">", value=VALUE, **fields) for _ in devices]
        )
        through.objects.bulk_create(
            [through(alarmrule_id=rule.pk, device_id=device_id) for rule, device_id in zip(rules, devices)]
        )


if __name__ == "__main__":
    main()
