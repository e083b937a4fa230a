"""The jobqueue conformance suite."""
