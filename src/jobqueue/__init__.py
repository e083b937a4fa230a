"""jobqueue: an asyncio job queue with interchangeable backends chosen by URL."""

from ._errors import (
    BackendUnavailableError,
    InvalidRequestError,
    InvalidTransitionError,
    JobNotFoundError,
    JobQueueError,
    UnknownBackendError,
)
from ._models import Completion, CreateJobRequest, Job, JobStatus
from ._plugins import (
    BackendInfo,
    PluginConflictError,
    connect,
    hookimpl,
    installed_backends,
    plugin_manager,
    register_backend,
    register_plugin,
    unregister_backend,
)
from ._queue import JobQueue, Refusal
from ._retry import Permanent, RetryPolicy
from ._worker import Worker, load_handlers

__all__ = [
    "BackendInfo",
    "BackendUnavailableError",
    "Completion",
    "CreateJobRequest",
    "InvalidRequestError",
    "InvalidTransitionError",
    "Job",
    "JobNotFoundError",
    "JobQueue",
    "JobQueueError",
    "JobStatus",
    "Permanent",
    "PluginConflictError",
    "Refusal",
    "RetryPolicy",
    "UnknownBackendError",
    "Worker",
    "connect",
    "hookimpl",
    "installed_backends",
    "load_handlers",
    "plugin_manager",
    "register_backend",
    "register_plugin",
    "unregister_backend",
]
