"""``python -m gateway`` is the ``valise`` command."""

from gateway.cli.main import main

main()
