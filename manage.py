#!/usr/bin/env python
"""Django's command-line utility for Telehub."""
import faulthandler
import os
import signal
import sys


def main():
    # `kill -USR1 <pid>` writes every thread's stack to stderr: where a stuck process is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    if sys.argv[1:2] == ["runhub"]:
        # The one-command dev hub runs in debug mode, so a fresh clone needs no settings.
        os.environ.setdefault("HUB_DEBUG", "true")
    from django.core.management import execute_from_command_line

    from hub.env import settings_or_exit

    settings_or_exit()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
