"""``python -m jobqueue._cli`` runs the ``jobqueue`` command."""

from . import main

main()
