"""Adds or removes the alarms bench's threshold rules: one per bench device, on `temp`, never
met by the publisher's values (15-25), so what is measured is evaluation, not alarms raised.

Run by bench.run in the hub's environment: python -m bench.alarm_rules --devices N | --remove"""
import argparse
import os

import django

NAME = "bench threshold"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--remove", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()

    from django.contrib.auth import get_user_model

    from alarms.models import AlarmRule
    from bench.prepare import device_ids

    AlarmRule.objects.filter(name=NAME).delete()
    if args.remove:
        return
    operator = get_user_model().objects.get(username="bench")
    rules = AlarmRule.objects.bulk_create(
        [AlarmRule(owner=operator, name=NAME, kind="threshold", key="temp", op=">", value=100, clear_value=90)
         for _ in range(args.devices)]
    )
    through = AlarmRule.devices.through
    through.objects.bulk_create(
        [through(alarmrule_id=rule.pk, device_id=device_id) for rule, device_id in zip(rules, device_ids(args.devices))]
    )


if __name__ == "__main__":
    main()
