"""``python -m gateway`` is the ``valise`` command."""

from gateway.cli.app import main

main()
