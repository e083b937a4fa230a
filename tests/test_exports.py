"""The public surface: ``jobqueue.__all__`` against SPEC §2, and the core importing no
backend or database driver."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import types

import jobqueue
import jobqueue.backend
import jobqueue.testing

SPEC_NAMES = {
    "connect",
    "JobQueue",
    "Job",
    "JobStatus",
    "CreateJobRequest",
    "Worker",
    "RetryPolicy",
    "JobQueueError",
    "JobNotFoundError",
    "InvalidTransitionError",
    "InvalidRequestError",
    "UnknownBackendError",
    "BackendUnavailableError",
}
# What the package exports beyond SPEC §2, on purpose: the plugin API of SPEC §3,
# the worker's helpers and the batch completion's types.
ADDED_NAMES = {
    "Completion",
    "Refusal",
    "BackendInfo",
    "PluginConflictError",
    "hookimpl",
    "installed_backends",
    "plugin_manager",
    "register_backend",
    "register_plugin",
    "unregister_backend",
    "Permanent",
    "load_handlers",
}
DRIVERS_AND_BACKENDS = {
    "psycopg",
    "psycopg_pool",
    "psycopg_binary",
    "aiosqlite",
    "sqlalchemy",
    "jobqueue_memory",
    "jobqueue_sqlite",
    "jobqueue_postgres",
    "jobqueue_conformance",
}


def test_all_is_the_spec_list_plus_the_intended_additions() -> None:
    """``jobqueue.__all__`` holds every name of SPEC §2 and, besides, exactly the names
    the package adds on purpose, each once."""
    assert len(jobqueue.__all__) == len(set(jobqueue.__all__))
    assert SPEC_NAMES - set(jobqueue.__all__) == set()
    assert set(jobqueue.__all__) - SPEC_NAMES == ADDED_NAMES


def test_everything_in_all_is_importable() -> None:
    """Every name in the ``__all__`` of ``jobqueue``, ``jobqueue.backend`` and
    ``jobqueue.testing`` exists and can be imported with ``from … import``."""
    for module in (jobqueue, jobqueue.backend, jobqueue.testing):
        for name in module.__all__:
            namespace: dict[str, object] = {}
            exec(f"from {module.__name__} import {name}", namespace)
            assert namespace[name] is getattr(module, name)


def test_no_public_name_is_left_out_of_all() -> None:
    """Every public, non-module attribute of ``jobqueue`` is listed in ``__all__``."""
    public = {
        name
        for name, value in vars(jobqueue).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(jobqueue.__all__)


def test_errors_form_one_tree() -> None:
    """Every exported error is a ``JobQueueError``; bad requests and unknown backends are
    also ``ValueError``s, an unknown job a ``LookupError``."""
    errors = [
        getattr(jobqueue, name)
        for name in jobqueue.__all__
        if inspect.isclass(getattr(jobqueue, name))
        and issubclass(getattr(jobqueue, name), BaseException)
        and name != "Permanent"
    ]
    assert len(errors) == 7
    assert all(issubclass(e, jobqueue.JobQueueError) for e in errors)
    assert issubclass(jobqueue.InvalidRequestError, ValueError)
    assert issubclass(jobqueue.UnknownBackendError, ValueError)
    assert issubclass(jobqueue.JobNotFoundError, LookupError)


def test_the_core_imports_no_backend_and_no_driver() -> None:
    """Importing ``jobqueue`` and every module under it (CLI included) loads no backend
    package and no database driver: those load only when a URL needs them."""
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import jobqueue\n"
        "for info in pkgutil.walk_packages(jobqueue.__path__, 'jobqueue.'):\n"
        "    if not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = {name.partition(".")[0] for name in json.loads(result.stdout)}
    assert "jobqueue" in loaded
    assert loaded & DRIVERS_AND_BACKENDS == set()
