"""Backend plugins: the pluggy hook, discovery through entry points, and ``connect``.

A backend is a pluggy plugin implementing ``jobqueue_register_backends``; it is
found through the ``jobqueue`` entry-point group (the built-in backends too) or
registered in code with :func:`register_plugin` / :func:`register_backend`.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import Distribution, entry_points
from types import TracebackType
from typing import Any, Protocol

import pluggy

from . import _validation as check
from ._errors import (
    BackendUnavailableError,
    InvalidRequestError,
    JobQueueError,
    UnknownBackendError,
)
from ._queue import DEFAULT_LEASE, Clock, JobQueue

__all__ = [
    "BackendFactory",
    "BackendInfo",
    "PluginConflictError",
    "connect",
    "hookimpl",
    "hookspec",
    "installed_backends",
    "plugin_manager",
    "register_backend",
    "register_plugin",
]

PROJECT = "jobqueue"
ENTRY_POINT_GROUP = "jobqueue"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

BackendFactory = Callable[..., JobQueue | Awaitable[JobQueue]]
"""``factory(url, *, clock, lease, migrate, **options)`` returning a queue or an awaitable."""

KNOWN_CAPABILITIES = frozenset({"concurrent_processes", "persistent", "listen_notify"})

logger = logging.getLogger("jobqueue")


class PluginConflictError(JobQueueError):
    """Two plugins registered the same URL scheme."""


class Register(Protocol):
    """The callable a ``jobqueue_register_backends`` implementation receives."""

    def __call__(
        self, scheme: str, factory: BackendFactory, *, capabilities: Iterable[str] = ()
    ) -> None: ...


class BackendHooks:
    """Hook specifications of the ``jobqueue`` project."""

    @hookspec
    def jobqueue_register_backends(self, register: Register) -> None:
        """Register URL schemes: ``register(scheme, factory, capabilities={...})``."""


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """One registered URL scheme and who provides it."""

    scheme: str
    factory: BackendFactory
    capabilities: frozenset[str]
    distribution: str | None
    version: str | None


class _Registry:
    """The plugin manager and the schemes its plugins registered; built on first use."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pm: pluggy.PluginManager | None = None
        self._dists: dict[int, Distribution | None] = {}
        self._backends: dict[str, BackendInfo] | None = None
        self._conflicts: dict[str, str] = {}
        self._in_code: dict[str, BackendInfo] = {}
        self.load_errors: dict[str, str] = {}

    def manager(self) -> pluggy.PluginManager:
        with self._lock:
            if self._pm is None:
                pm = pluggy.PluginManager(PROJECT)
                pm.add_hookspecs(BackendHooks)
                self._add_spec_modules(pm)
                for ep in entry_points(group=ENTRY_POINT_GROUP):
                    try:
                        plugin = ep.load()
                    except Exception as exc:  # a broken plugin must not break the others
                        self.load_errors[ep.name] = f"{type(exc).__name__}: {exc}"
                        logger.warning("jobqueue plugin %r failed to load: %s", ep.name, exc)
                        continue
                    if pm.is_registered(plugin):
                        continue
                    # Two distributions may use one entry-point name; both must load so
                    # that a scheme they both claim is reported as a conflict.
                    name = ep.name
                    if pm.has_plugin(name):
                        name = f"{ep.name} ({ep.dist.name if ep.dist else '?'})"
                    pm.register(plugin, name=name)
                    self._dists[id(plugin)] = ep.dist
                self._pm = pm
            return self._pm

    @staticmethod
    def _add_spec_modules(pm: pluggy.PluginManager) -> None:
        from . import _worker_hooks

        pm.add_hookspecs(_worker_hooks.WorkerHooks)

    def register_plugin(self, plugin: object, name: str | None) -> None:
        with self._lock:
            self.manager().register(plugin, name=name)
            self._backends = None

    def backends(self) -> dict[str, BackendInfo]:
        with self._lock:
            if self._backends is None:
                self._backends, self._conflicts = {}, {}
                for impl in self.manager().hook.jobqueue_register_backends.get_hookimpls():
                    registered: list[BackendInfo] = []
                    dist = self._dists.get(id(impl.plugin))
                    try:
                        impl.function(register=self._registrar(dist, registered))
                    except Exception as exc:  # a broken plugin must not break the others
                        self.load_errors[impl.plugin_name] = f"{type(exc).__name__}: {exc}"
                        logger.warning(
                            "jobqueue plugin %r failed to register: %s", impl.plugin_name, exc
                        )
                        continue
                    for info in registered:
                        self._add(info)
                for info in self._in_code.values():
                    self._add(info)
            return self._backends

    @staticmethod
    def _registrar(dist: Distribution | None, registered: list[BackendInfo]) -> Register:
        def register(
            scheme: str, factory: BackendFactory, *, capabilities: Iterable[str] = ()
        ) -> None:
            registered.append(_backend_info(scheme, factory, capabilities, dist))

        return register

    def _add(self, info: BackendInfo) -> None:
        assert self._backends is not None
        existing = self._backends.get(info.scheme)
        if existing is not None and existing.factory is not info.factory:
            self._conflicts[info.scheme] = (
                f"URL scheme {info.scheme!r} is registered by two plugins: "
                f"{_provider(existing)} and {_provider(info)}; uninstall one of them"
            )
            return
        self._backends[info.scheme] = info

    def add_backend(self, info: BackendInfo) -> None:
        with self._lock:
            backends = self.backends()
            existing = backends.get(info.scheme)
            if existing is not None:
                raise PluginConflictError(
                    f"URL scheme {info.scheme!r} is already registered by {_provider(existing)}"
                )
            self._in_code[info.scheme] = info
            backends[info.scheme] = info

    def remove_backend(self, scheme: str) -> None:
        with self._lock:
            self._in_code.pop(scheme, None)
            self.backends().pop(scheme, None)

    def resolve(self, scheme: str) -> BackendInfo:
        with self._lock:
            backends = self.backends()
            if scheme in self._conflicts:
                raise PluginConflictError(self._conflicts[scheme])
            info = backends.get(scheme)
        if info is None:
            known = ", ".join(f"{s}://" for s in sorted(backends)) or "none"
            message = f"no installed jobqueue backend handles {scheme!r} URLs; installed: {known}"
            if self.load_errors:
                broken = "; ".join(f"{n} ({e})" for n, e in sorted(self.load_errors.items()))
                message += f"; plugins that failed to load: {broken}"
            raise UnknownBackendError(message)
        return info

    def conflicts(self) -> dict[str, str]:
        with self._lock:
            self.backends()
            return dict(self._conflicts)


def _backend_info(
    scheme: str, factory: BackendFactory, capabilities: Iterable[str], dist: Distribution | None
) -> BackendInfo:
    if not isinstance(scheme, str) or not scheme or "://" in scheme:
        raise InvalidRequestError(
            f"a backend scheme must be a bare name like 'acme', got {scheme!r}"
        )
    if not callable(factory):
        raise InvalidRequestError(f"the factory for {scheme!r} is not callable")
    if isinstance(capabilities, str):
        raise InvalidRequestError("capabilities must be a collection of names, not a string")
    return BackendInfo(
        scheme=scheme.lower(),
        factory=factory,
        capabilities=frozenset(capabilities),
        distribution=None if dist is None else dist.metadata["Name"],
        version=None if dist is None else dist.version,
    )


def _provider(info: BackendInfo) -> str:
    if info.distribution is None:
        return f"{getattr(info.factory, '__module__', '?')} (registered in code)"
    return f"distribution {info.distribution} {info.version}"


_registry = _Registry()


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide pluggy manager, with every ``jobqueue`` entry point loaded."""
    return _registry.manager()


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a pluggy plugin (a module or an object with ``@hookimpl`` methods)."""
    _registry.register_plugin(plugin, name)


def register_backend(
    scheme: str, factory: BackendFactory, *, capabilities: Iterable[str] = ()
) -> BackendInfo:
    """Make ``scheme://`` URLs open with ``factory``, for this process.

    Raises ``PluginConflictError`` when the scheme is taken. Undo with
    :func:`unregister_backend`.
    """
    info = _backend_info(scheme, factory, capabilities, None)
    _registry.add_backend(info)
    return info


def unregister_backend(scheme: str) -> None:
    """Forget a scheme registered in this process. Unknown schemes are ignored."""
    _registry.remove_backend(scheme.lower())


def installed_backends() -> list[BackendInfo]:
    """Every registered scheme, sorted by name."""
    return sorted(_registry.backends().values(), key=lambda b: b.scheme)


def backend_conflicts() -> dict[str, str]:
    """Schemes claimed by two plugins, each with the error that connecting to it raises."""
    return _registry.conflicts()


def plugin_load_errors() -> dict[str, str]:
    """Entry points of the ``jobqueue`` group that failed to import, with the error."""
    _registry.manager()
    return dict(_registry.load_errors)


def backend_for(url: str) -> BackendInfo:
    """The backend that handles ``url``; raises ``UnknownBackendError``."""
    if not isinstance(url, str):
        raise InvalidRequestError(f"url must be a str, not {type(url).__name__}")
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise UnknownBackendError(
            f"not a backend URL (expected scheme://...): {url.split('@')[-1]!r}; installed: "
            + ", ".join(f"{b.scheme}://" for b in installed_backends())
        )
    return _registry.resolve(scheme.lower())


async def open_queue(
    url: str,
    *,
    clock: Clock | None = None,
    lease: timedelta = DEFAULT_LEASE,
    migrate: bool = True,
    **options: Any,
) -> JobQueue:
    info = backend_for(url)
    if clock is not None and not callable(clock):
        raise InvalidRequestError(f"clock must be callable, not {type(clock).__name__}")
    check.lease(lease)
    if not isinstance(migrate, bool):
        raise InvalidRequestError(f"migrate must be a bool, not {type(migrate).__name__}")
    result = info.factory(url, clock=clock, lease=lease, migrate=migrate, **options)
    queue = await result if inspect.isawaitable(result) else result
    if not isinstance(queue, JobQueue):
        raise BackendUnavailableError(
            f"the {info.scheme!r} backend returned {type(queue).__name__}, not a JobQueue"
        )
    return queue


class Connection:
    """What :func:`connect` returns: ``await`` it for a queue, or use ``async with``."""

    def __init__(self, url: str, kwargs: dict[str, Any]) -> None:
        self._url = url
        self._kwargs = kwargs
        self._queue: JobQueue | None = None

    def __await__(self) -> Generator[Any, None, JobQueue]:
        return open_queue(self._url, **self._kwargs).__await__()

    async def __aenter__(self) -> JobQueue:
        self._queue = await open_queue(self._url, **self._kwargs)
        return self._queue

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._queue is not None:
            queue, self._queue = self._queue, None
            await queue.close()

    def __repr__(self) -> str:
        return f"<jobqueue.Connection {self._url.split('://')[0]}://…>"


def connect(
    url: str,
    *,
    clock: Clock | None = None,
    lease: timedelta = DEFAULT_LEASE,
    migrate: bool = True,
    **options: Any,
) -> Connection:
    """Open the queue at ``url`` with the backend registered for its scheme.

    ``clock``: every "now" the backend uses comes from it (default: the
    backend's own clock). ``lease``: how long a claim holds a job.
    ``migrate``: create or upgrade the schema; when False a missing or old
    schema raises ``BackendUnavailableError``. Other ``options`` go to the
    backend, which rejects unknown ones with ``InvalidRequestError``.

    Raises ``UnknownBackendError`` for an unknown scheme (listing the installed
    ones) and ``BackendUnavailableError`` when the backend cannot be reached.
    """
    return Connection(url, dict(clock=clock, lease=lease, migrate=migrate, **options))
