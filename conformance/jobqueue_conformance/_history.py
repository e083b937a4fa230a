"""A history of claims and outcomes from concurrent claimers, and its checker.

Claimers record ``claim`` right after a claim returns and ``release`` or
``complete`` right before they call it, so in a history recorded on one event
loop a job is *held* from its claim until its holder lets go. The checker
counts, in the manner of a total-queue check:

- **lost**: created jobs that were never completed;
- **duplicated**: a job claimed while another claimer still held it (or, where
  releases are not allowed, claimed twice at all), or completed twice;
- **unexpected**: claimed jobs that nobody created.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

__all__ = ["Event", "HistoryReport", "check_history"]

Action = Literal["claim", "release", "complete", "refused"]


@dataclass(frozen=True, slots=True)
class Event:
    """One step of one claimer: what it did to which job in which attempt."""

    claimer: str
    action: Action
    job_id: UUID
    attempt: int


@dataclass
class HistoryReport:
    """What the checker found; :attr:`ok` when nothing is wrong."""

    created: int
    completed: int
    lost: set[UUID] = field(default_factory=set)
    duplicated: list[str] = field(default_factory=list)
    unexpected: set[UUID] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.refused)

    def describe(self) -> str:
        lines = [
            f"{self.created} jobs created, {self.completed} completed, {len(self.lost)} lost, "
            f"{len(self.duplicated)} duplicated, {len(self.unexpected)} unexpected, "
            f"{len(self.refused)} completions refused"
        ]
        lines += [f"  lost: {job_id}" for job_id in sorted(self.lost, key=str)[:5]]
        lines += [f"  duplicated: {text}" for text in self.duplicated[:5]]
        lines += [f"  unexpected: {job_id}" for job_id in sorted(self.unexpected, key=str)[:5]]
        lines += [f"  refused: {text}" for text in self.refused[:5]]
        return "\n".join(lines)


def check_history(
    created: Iterable[UUID], events: Sequence[Event], *, releases: bool = True
) -> HistoryReport:
    """Check a history against the jobs created.

    With ``releases=False`` (histories merged from several processes, where no
    claimer releases) any second claim of a job is a duplicate.
    """
    made = set(created)
    holder: dict[UUID, Event] = {}
    claims: Counter[UUID] = Counter()
    completions: Counter[UUID] = Counter()
    report = HistoryReport(created=len(made), completed=0)
    for event in events:
        job_id = event.job_id
        if event.action == "claim":
            if job_id not in made:
                report.unexpected.add(job_id)
            claims[job_id] += 1
            held = holder.get(job_id)
            if held is not None:
                report.duplicated.append(
                    f"{job_id} claimed by {event.claimer} (attempt {event.attempt}) while "
                    f"{held.claimer} held it (attempt {held.attempt})"
                )
            elif not releases and claims[job_id] > 1:
                report.duplicated.append(f"{job_id} claimed {claims[job_id]} times")
            holder[job_id] = event
        elif event.action == "refused":
            report.refused.append(
                f"{event.claimer} could not complete {job_id} in attempt {event.attempt}"
            )
        else:
            held = holder.get(job_id)
            if held is not None and held.claimer == event.claimer:
                del holder[job_id]
            if event.action == "complete":
                completions[job_id] += 1
                if completions[job_id] == 2:
                    report.duplicated.append(f"{job_id} completed twice")
    report.completed = len(completions)
    report.lost = made - set(completions)
    return report
