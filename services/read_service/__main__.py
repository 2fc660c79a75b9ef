"""`python -m read_service <command>`: Django's manage.py for the read side (migrate, projector, ...)."""

import os
import sys

from django.core.management import execute_from_command_line

from cqrs_common.development_secrets import DevelopmentSecretsRefused


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "read_service.settings")
    try:
        execute_from_command_line([sys.argv[0], *sys.argv[1:]])
    except DevelopmentSecretsRefused as refused:
        # Already logged with the variables' names; this line is for a reader of the terminal.
        sys.exit(f"python -m {__package__}: {refused}")


if __name__ == "__main__":
    main()
