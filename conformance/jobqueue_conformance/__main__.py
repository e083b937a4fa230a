"""``python -m jobqueue_conformance URL``: the same as ``jobqueue conformance URL``."""

from .cli import main

main()
