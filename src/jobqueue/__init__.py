"""jobqueue: an asyncio job queue with interchangeable backends chosen by URL."""

from ._errors import (
    BackendUnavailableError,
    InvalidRequestError,
    InvalidTransitionError,
    JobNotFoundError,
    JobQueueError,
    UnknownBackendError,
)
from ._models import CreateJobRequest, Job, JobStatus
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
from ._queue import JobQueue

__all__ = [
    "BackendInfo",
    "BackendUnavailableError",
    "CreateJobRequest",
    "InvalidRequestError",
    "InvalidTransitionError",
    "Job",
    "JobNotFoundError",
    "JobQueue",
    "JobQueueError",
    "JobStatus",
    "PluginConflictError",
    "UnknownBackendError",
    "connect",
    "hookimpl",
    "installed_backends",
    "plugin_manager",
    "register_backend",
    "register_plugin",
    "unregister_backend",
]
