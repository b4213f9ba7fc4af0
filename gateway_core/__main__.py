"""``python -m gateway_core`` is the ``gateway`` command."""

from gateway_core.cli import main

main()
