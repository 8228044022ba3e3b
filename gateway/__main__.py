"""``python -m gateway`` is the ``valise`` command."""

from gateway.cli import main

main()
