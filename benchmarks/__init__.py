"""Benchmarks comparing jobqueue with the bare database drivers and with peer queues.

Run ``python -m benchmarks.compare --help``. Nothing here is part of the test suite.
"""
