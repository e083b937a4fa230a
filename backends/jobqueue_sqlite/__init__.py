"""The sqlite backend."""
