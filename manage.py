#!/usr/bin/env python
import sys


def main() -> None:
    from gateway.startup import exit_on_bad_configuration, load_settings

    load_settings()
    from django.core.management import execute_from_command_line

    # Commands read settings of their own (rungateway's PORT, for one): same one-line exit.
    with exit_on_bad_configuration():
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
