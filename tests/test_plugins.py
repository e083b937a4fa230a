"""Backend plugins (SPEC §3): entry-point discovery, programmatic registration,
conflicts between distributions, broken plugins, and ``jobqueue backends``."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import jobqueue
import jobqueue._plugins as plugins
import jobqueue_memory
from jobqueue import (
    BackendUnavailableError,
    InvalidRequestError,
    JobQueue,
    PluginConflictError,
    UnknownBackendError,
)
from jobqueue._cli import cli


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test discovers plugins anew, and its registrations vanish afterwards."""
    monkeypatch.setattr(plugins, "_registry", plugins._Registry())


class FakeDistributions:
    """Installs throw-away distributions (``.dist-info`` + modules) on ``sys.path``."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.prefix = f"fake_{uuid.uuid4().hex[:8]}_"
        self.modules: list[str] = []
        monkeypatch.syspath_prepend(str(root))

    def module(self, name: str, source: str) -> str:
        """Write a module; returns its (unique) import name."""
        full = self.prefix + name
        (self.root / f"{full}.py").write_text(textwrap.dedent(source))
        self.modules.append(full)
        return full

    def backend_module(self, name: str, scheme: str) -> str:
        """A plugin module registering ``scheme`` with its own factory (a memory queue)."""
        return self.module(
            name,
            f"""
            import jobqueue
            from jobqueue_memory import open_memory

            def open_backend(url, **options):
                return open_memory("memory://", **options)

            @jobqueue.hookimpl
            def jobqueue_register_backends(register):
                register({scheme!r}, open_backend, capabilities={{"persistent"}})
            """,
        )

    def distribution(self, name: str, dist_version: str, entry_points: dict[str, str]) -> None:
        info = self.root / f"{name.replace('-', '_')}-{dist_version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {dist_version}\n"
        )
        lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[jobqueue]\n{lines}")

    def cleanup(self) -> None:
        for name in self.modules:
            sys.modules.pop(name, None)


@pytest.fixture
def dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDistributions]:
    fake = FakeDistributions(tmp_path, monkeypatch)
    yield fake
    fake.cleanup()


def _memory_queue(url: str, **options: Any) -> JobQueue:
    return jobqueue_memory.open_memory("memory://", **options)


async def _async_memory_queue(url: str, **options: Any) -> JobQueue:
    return jobqueue_memory.open_memory("memory://", **options)


# ------------------------------------------------------------ discovery


def test_entry_points_find_the_memory_backend() -> None:
    """The built-in memory backend is found through the ``jobqueue`` entry-point group,
    with its distribution ``jobqueue`` and that distribution's version."""
    found = {info.scheme: info for info in jobqueue.installed_backends()}
    memory = found["memory"]
    assert memory.factory is jobqueue_memory.open_memory
    assert memory.distribution == "jobqueue"
    assert memory.version == version("jobqueue")
    assert "listen_notify" in memory.capabilities
    assert jobqueue.plugin_manager().get_plugin("memory") is jobqueue_memory
    assert [info.scheme for info in jobqueue.installed_backends()] == sorted(found)


def test_cli_lists_the_memory_backend_as_json() -> None:
    """``jobqueue --json backends`` lists ``memory`` with its capabilities, distribution
    and version, and reports no problem."""
    result = CliRunner().invoke(cli, ["--json", "backends"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    (memory,) = [row for row in listing["backends"] if row["scheme"] == "memory"]
    assert memory["distribution"] == "jobqueue"
    assert memory["version"] == version("jobqueue")
    assert "listen_notify" in memory["capabilities"]
    assert listing["problems"] == []


def test_cli_table_lists_the_memory_backend() -> None:
    """``jobqueue backends`` prints a table with the ``memory://`` scheme and its distribution."""
    result = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["backends"])
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if "memory://" in line]
    assert "jobqueue" in line
    assert version("jobqueue") in line


# ------------------------------------------------- programmatic registration


@pytest.mark.parametrize("factory", [_memory_queue, _async_memory_queue], ids=["sync", "async"])
async def test_register_backend_makes_a_scheme_connectable(factory: Any) -> None:
    """A scheme registered in code opens with its factory, sync or async, receiving the
    URL and the standard options; unregistering it makes the scheme unknown again."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def recording(url: str, **options: Any) -> Any:
        seen.append((url, options))
        return factory(url, **options)

    info = jobqueue.register_backend("Test-Scheme", recording, capabilities=["persistent"])
    assert (info.scheme, info.capabilities, info.distribution) == (
        "test-scheme",
        frozenset({"persistent"}),
        None,
    )
    assert info in jobqueue.installed_backends()
    async with jobqueue.connect("TEST-SCHEME://somewhere") as queue:
        assert isinstance(queue, JobQueue)
    assert seen == [
        (
            "TEST-SCHEME://somewhere",
            {"clock": None, "lease": queue.lease, "migrate": True},
        )
    ]
    jobqueue.unregister_backend("test-scheme")
    with pytest.raises(UnknownBackendError):
        await jobqueue.connect("test-scheme://somewhere")
    jobqueue.unregister_backend("test-scheme")


def test_registering_a_taken_scheme_is_a_conflict() -> None:
    """Registering a scheme a plugin already provides raises ``PluginConflictError``
    naming the provider; the original stays in place."""
    with pytest.raises(PluginConflictError, match="distribution jobqueue"):
        jobqueue.register_backend("memory", _memory_queue)
    jobqueue.register_backend("twice", _memory_queue)
    with pytest.raises(PluginConflictError, match="registered in code"):
        jobqueue.register_backend("twice", _async_memory_queue)
    found = {info.scheme: info.factory for info in jobqueue.installed_backends()}
    assert found["memory"] is jobqueue_memory.open_memory
    assert found["twice"] is _memory_queue


@pytest.mark.parametrize(
    ("scheme", "factory", "capabilities"),
    [
        ("", _memory_queue, ()),
        ("acme://", _memory_queue, ()),
        (5, _memory_queue, ()),
        ("acme", "not callable", ()),
        ("acme", _memory_queue, "persistent"),
    ],
)
def test_register_backend_rejects_bad_arguments(
    scheme: Any, factory: Any, capabilities: Any
) -> None:
    """A scheme that is not a bare name, a factory that is not callable, or capabilities
    given as one string are an ``InvalidRequestError``; nothing is registered."""
    before = jobqueue.installed_backends()
    with pytest.raises(InvalidRequestError):
        jobqueue.register_backend(scheme, factory, capabilities=capabilities)
    assert jobqueue.installed_backends() == before


class AcmePlugin:
    """A pluggy plugin object registering one scheme with an async factory."""

    @jobqueue.hookimpl
    def jobqueue_register_backends(self, register: Any) -> None:
        register("acme", _async_memory_queue, capabilities={"concurrent_processes"})


async def test_register_plugin_adds_its_schemes() -> None:
    """A plugin object with a ``@jobqueue.hookimpl`` registered in code contributes its
    schemes, and the ones registered with ``register_backend`` survive it."""
    jobqueue.register_backend("inline", _memory_queue)
    jobqueue.register_plugin(AcmePlugin(), name="acme-plugin")
    found = {info.scheme: info for info in jobqueue.installed_backends()}
    assert found["acme"].capabilities == {"concurrent_processes"}
    assert found["acme"].distribution is None
    assert {"memory", "inline", "acme"} <= set(found)
    queue = await jobqueue.connect("acme://")
    await queue.close()
    async with jobqueue.connect("inline://") as inline:
        assert isinstance(inline, JobQueue)


# --------------------------------------------------------------- errors


async def test_unknown_scheme_names_it_and_lists_installed_ones() -> None:
    """An unknown scheme raises ``UnknownBackendError`` (a ``ValueError``) naming the
    scheme and listing the installed schemes."""
    with pytest.raises(UnknownBackendError) as info:
        await jobqueue.connect("nosuch://u:hunter2@host/db")
    message = str(info.value)
    assert "'nosuch'" in message
    assert "memory://" in message
    assert "hunter2" not in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("url", ["jobs.db", "", "://x", "memory:/x", "u:hunter2@host/db"])
async def test_url_without_scheme_is_unknown_backend(url: str) -> None:
    """A URL without ``scheme://`` raises ``UnknownBackendError`` listing installed
    schemes and never showing a password."""
    with pytest.raises(UnknownBackendError, match="memory://") as info:
        await jobqueue.connect(url)
    assert "hunter2" not in str(info.value)


async def test_url_must_be_a_string() -> None:
    """A URL that is not a str is an ``InvalidRequestError``."""
    with pytest.raises(InvalidRequestError, match="url"):
        await jobqueue.connect(b"memory://")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "options"),
    [("memory://", {"bogus": 1}), ("memory://?bogus=1", {}), ("memory://x?pool=2", {})],
)
async def test_unknown_option_is_rejected(url: str, options: dict[str, Any]) -> None:
    """An option the backend does not know (keyword or URL query) is an
    ``InvalidRequestError`` naming it."""
    with pytest.raises(InvalidRequestError, match=r"bogus|pool"):
        await jobqueue.connect(url, **options)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_factory_returning_something_else_is_an_error(is_async: bool) -> None:
    """A factory that returns something other than a ``JobQueue`` makes ``connect``
    raise ``BackendUnavailableError`` naming the scheme."""

    def sync_factory(url: str, **options: Any) -> Any:
        return object()

    async def async_factory(url: str, **options: Any) -> Any:
        return "a string"

    jobqueue.register_backend("odd", async_factory if is_async else sync_factory)
    with pytest.raises(BackendUnavailableError, match="'odd'"):
        await jobqueue.connect("odd://")


# ------------------------------------------------ plugins from distributions


@pytest.mark.parametrize("same_entry_point_name", [True, False])
async def test_two_distributions_claiming_one_scheme_is_an_error_naming_both(
    dists: FakeDistributions, same_entry_point_name: bool
) -> None:
    """When two installed distributions register the same scheme, connecting to it
    raises ``PluginConflictError`` naming both distributions (also when both use the
    same entry-point name); other schemes keep working and the CLI reports it."""
    one = dists.backend_module("one", "acme")
    two = dists.backend_module("two", "acme")
    dists.distribution("acme-one", "1.0", {"acme": one})
    dists.distribution("acme-two", "2.0", {"acme" if same_entry_point_name else "acme2": two})
    with pytest.raises(PluginConflictError) as info:
        await jobqueue.connect("acme://")
    message = str(info.value)
    assert "acme-one 1.0" in message
    assert "acme-two 2.0" in message
    assert "acme" in plugins.backend_conflicts()
    async with jobqueue.connect("memory://") as queue:
        assert isinstance(queue, JobQueue)
    result = CliRunner().invoke(cli, ["--json", "backends"])
    problems = json.loads(result.output)["problems"]
    assert any("acme-one" in p and "acme-two" in p for p in problems)


async def test_a_distribution_plugin_is_listed_with_its_distribution(
    dists: FakeDistributions,
) -> None:
    """A third-party plugin found through its entry point is listed with its
    distribution name and version, and connects."""
    module = dists.backend_module("solo", "solo")
    dists.distribution("solo-backend", "3.1.4", {"solo": module})
    found = {info.scheme: info for info in jobqueue.installed_backends()}
    assert (found["solo"].distribution, found["solo"].version) == ("solo-backend", "3.1.4")
    assert found["solo"].capabilities == {"persistent"}
    async with jobqueue.connect("solo://") as queue:
        assert isinstance(queue, JobQueue)


async def test_a_plugin_that_fails_to_import_is_reported_without_breaking_others(
    dists: FakeDistributions,
) -> None:
    """An entry point whose module raises on import is listed in the load errors and in
    the unknown-scheme message; the other plugins still load and connect."""
    broken = dists.module("broken", "raise RuntimeError('cannot start: missing driver')\n")
    good = dists.backend_module("good", "good")
    dists.distribution("broken-backend", "0.1", {"broken": broken})
    dists.distribution("good-backend", "0.1", {"good": good})
    errors = plugins.plugin_load_errors()
    assert "missing driver" in errors["broken"]
    async with jobqueue.connect("good://") as queue:
        assert isinstance(queue, JobQueue)
    with pytest.raises(UnknownBackendError, match=r"broken.*missing driver"):
        await jobqueue.connect("broken://")


async def test_a_plugin_whose_hook_raises_is_reported_without_breaking_others(
    dists: FakeDistributions,
) -> None:
    """A plugin whose registration hook raises (here: an invalid scheme) registers
    nothing, is reported in the load errors, and every other backend stays available."""
    faulty = dists.module(
        "faulty",
        """
        import jobqueue
        from jobqueue_memory import open_memory

        @jobqueue.hookimpl
        def jobqueue_register_backends(register):
            register("half", open_memory)
            register("bad://", open_memory)
        """,
    )
    dists.distribution("faulty-backend", "0.1", {"faulty": faulty})
    schemes = {info.scheme for info in jobqueue.installed_backends()}
    assert "memory" in schemes
    assert "half" not in schemes
    assert "bare name" in plugins.plugin_load_errors()["faulty"]
    async with jobqueue.connect("memory://") as queue:
        assert isinstance(queue, JobQueue)
