"""Peer job queues driven through their documented public APIs, one module per peer."""
