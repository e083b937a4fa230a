"""The one table of an invocation, and the targets checked against it."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterable

from ._common import Sample, Samples, Settings

OURS = "jobqueue"
BARE_SQLITE_SAME_SQL = "bare sqlite3, jobqueue's SQL"


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "commits/job":
        return f"{value:.3f}"
    return f"{value:,.0f}"


def _ratio(ours: float | None, theirs: float) -> str:
    if ours is None or theirs <= 0:
        return "—"
    return f"{ours / theirs:.2f}"


def table(samples: Iterable[Sample]) -> list[str]:
    """Markdown rows: one per system and configuration, with jobqueue/that system."""
    rows = [
        "| backend | workload | configuration | system | median | unit | jobqueue ÷ system |",
        "|---|---|---|---|--:|---|--:|",
    ]
    items = list(samples)
    ours: dict[tuple[str, str, str], float] = {
        (s.backend, s.workload, _group(s.config)): s.value for s in items if s.system == OURS
    }
    for s in items:
        ratio = (
            ""
            if s.system == OURS
            else _ratio(ours.get((s.backend, s.workload, _group(s.config))), s.value)
        )
        unit = s.unit if s.higher_is_better else f"{s.unit} (lower is better)"
        rows.append(
            f"| {s.backend} | {s.workload} | {s.config} | {s.system} | "
            f"{_fmt(s.value, s.unit)} | {unit} | {ratio} |"
        )
    return rows


def _group(config: str) -> str:
    """The part of a configuration that pairs systems (job counts may differ)."""
    return config.split(", N=")[0]


def _best(
    items: list[Sample],
    backend: str,
    workload: Callable[[str], bool],
    system: Callable[[str], bool],
) -> Sample | None:
    found = [s for s in items if s.backend == backend and workload(s.workload) and system(s.system)]
    return max(found, key=lambda s: s.value) if found else None


def _one(items: list[Sample], backend: str, workload: str, system: str) -> Sample | None:
    for s in items:
        if s.backend == backend and s.workload == workload and s.system == system:
            return s
    return None


def targets(samples: Samples) -> list[str]:
    """One line per target of the performance issue that this run measured."""
    items = samples.items
    lines: list[str] = []

    def ratio_line(
        name: str, ours: Sample | None, theirs: Sample | None, goal: float | None
    ) -> None:
        """A target's line; with ``goal`` None, a figure shown beside a target, not judged."""
        if ours is None or theirs is None:
            return
        got = ours.value / theirs.value
        if goal is None:
            judged = "(beside the target above; not judged)"
        else:
            judged = f"(goal ≥ {goal}x) — {'met' if got >= goal else 'MISSED'}"
        lines.append(
            f"- {name}: {got:.2f}x {judged}  "
            f"[{ours.system} {ours.workload} {ours.config}: {ours.value:,.0f} vs "
            f"{theirs.system} {theirs.workload} {theirs.config}: {theirs.value:,.0f}]"
        )

    def drain(w: str) -> bool:
        return w.startswith("drain")

    ours_pg_drain = _best(items, "postgres", drain, lambda s: s == OURS)
    ratio_line(
        "PostgreSQL Worker drain vs pgqueuer's best",
        ours_pg_drain,
        _best(items, "postgres", drain, lambda s: s.startswith("pgqueuer")),
        2.0,
    )
    ratio_line(
        "PostgreSQL Worker drain vs procrastinate's best",
        ours_pg_drain,
        _best(items, "postgres", drain, lambda s: s == "procrastinate"),
        10.0,
    )
    ratio_line(
        "PostgreSQL claim_job+complete_job, 8 connections, vs bare psycopg",
        _one(items, "postgres", "claim+complete loop", OURS),
        _one(items, "postgres", "claim+complete loop", "bare psycopg"),
        0.9,
    )
    ratio_line(
        "PostgreSQL create_jobs vs pgqueuer batch enqueue",
        _one(items, "postgres", "enqueue, batch", OURS),
        _one(items, "postgres", "enqueue, batch", "pgqueuer"),
        2.0,
    )
    ratio_line(
        "PostgreSQL create_job vs bare single-row insert",
        _one(items, "postgres", "enqueue, one per call", OURS),
        _one(items, "postgres", "enqueue, one per call", "bare psycopg"),
        0.9,
    )
    for workload in ("enqueue-to-start", "commit-to-start"):
        for label, goal in (("p50", 5.0), ("p95", 20.0)):
            found = _one(items, "postgres", f"{workload} {label}", OURS)
            floor = _one(items, "postgres", f"{workload} {label}", "bare psycopg")
            if found is not None:
                verdict = "met" if found.value <= goal else "MISSED"
                beside = "" if floor is None else f"; bare psycopg {floor.value:.2f} ms"
                lines.append(
                    f"- PostgreSQL {workload} {label}: {found.value:.2f} ms "
                    f"(goal ≤ {goal:g} ms{beside}) — {verdict}"
                )
    empty = _one(items, "postgres", "claim latency, empty table p50", OURS)
    big = _one(items, "postgres", "claim latency, 1M done + 100k retries p50", OURS)
    if empty is not None and big is not None:
        got = big.value / empty.value
        verdict = "met" if got <= 1.5 else "MISSED"
        lines.append(
            f"- PostgreSQL claim latency, big table vs empty: {got:.2f}x "
            f"({big.value:.2f} vs {empty.value:.2f} ms; goal ≤ 1.5x) — {verdict}"
        )
    ratio_line(
        "SQLite claim_job+complete_job vs bare sqlite3 running the same statements",
        _one(items, "sqlite", "claim+complete loop", OURS),
        _one(items, "sqlite", "claim+complete loop", BARE_SQLITE_SAME_SQL),
        0.7,
    )
    ratio_line(
        "SQLite claim_job+complete_job vs bare sqlite3 on a minimal table",
        _one(items, "sqlite", "claim+complete loop", OURS),
        _one(items, "sqlite", "claim+complete loop", "bare sqlite3"),
        None,
    )
    four = [
        s
        for s in items
        if s.backend == "sqlite" and s.system == OURS and s.config.startswith("4 process")
    ]
    one = [
        s
        for s in items
        if s.backend == "sqlite" and s.system == OURS and s.config.startswith("1 process")
    ]
    if four and one:
        ratio_line("SQLite 4 processes vs 1 process (jobqueue)", four[0], one[0], 1.0)
    ratio_line(
        "SQLite drain vs huey's best",
        _best(items, "sqlite", drain, lambda s: s == OURS),
        _best(items, "sqlite", drain, lambda s: s == "huey"),
        2.0,
    )
    for s in items:
        if s.backend == "memory" and s.workload == "claim+complete loop" and s.system == OURS:
            verdict = "met" if s.value >= 100_000 else "MISSED"
            lines.append(
                f"- In-memory claim+complete ({s.config}): {s.value:,.0f}/s "
                f"(goal ≥ 100,000/s) — {verdict}"
            )
    return lines


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def render(
    samples: Samples,
    settings: Settings,
    *,
    command: str,
    elapsed: float,
    load_before: tuple[float, float, float],
    machine: str,
) -> str:
    load_after = os.getloadavg()
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {os.cpu_count()} CPUs, {_cpu_model()}; Python {platform.python_version()}; "
        f"load average before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, "
        f"after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}; "
        f"{settings.repeats} repeat(s), medians; took {elapsed:,.0f} s.",
        "",
        *table(samples.items),
        "",
        "Targets:",
        "",
        *(targets(samples) or ["- (none measured)"]),
        "",
    ]
    return "\n".join(lines)
