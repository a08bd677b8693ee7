"""The record of a deploy: what changes, one line each, and the counts of the last line.

The same walk over the account makes the plan and the apply (infra.deploy.reconcile); only
the apply sends the writes. Each resource is counted once: created, updated (a removal of
a trigger the file no longer declares counts as an update of the account), or unchanged.
Lines: `+ create <what> (<detail>)`, `~ update <what> <field>: <old> -> <new>` (environment
values masked), `- remove <what>`, and a resource replaced (deleted, then created anew) as
its `- remove` line and its `+ create` line, counted as created; a change SCF cannot make is
a blocker (`! ...`), and a plan with one stops the apply before any write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

MASK = "***"
NONE = "(none)"


@dataclass(frozen=True)
class Diff:
    field: str
    old: object
    new: object
    secret: bool = False

    def _show(self, value: object) -> str:
        if value is None:
            return NONE
        return MASK if self.secret else str(value)

    def render(self) -> str:
        return f"{self.field}: {self._show(self.old)} -> {self._show(self.new)}"


def diffs(fields: Sequence[tuple[str, object, object]]) -> list[Diff]:
    """The fields whose old value (second) differs from the new one (third)."""
    return [Diff(name, old, new) for name, old, new in fields if old != new]


def compare(names: Sequence[str], old: Sequence[object], new: Sequence[object]) -> list[Diff]:
    """`diffs` of fields given as three parallel sequences."""
    return diffs(list(zip(names, old, new, strict=True)))


@dataclass(frozen=True)
class Stopped:
    """The change an apply's failure stopped: its lines, and whether SCF had accepted a write
    of it (`begun`: it may be made in part, or in full but not seen through)."""

    lines: list[str]
    begun: bool


class Plan:
    def __init__(self, out: TextIO | None, *, dry_run: bool) -> None:
        self.out = out
        self.dry_run = dry_run
        self.changes: list[list[str]] = []  # in order; in an apply, each is begun, then sent
        self._made = 0  # how many of `changes`, from the first, are known to be made in full
        self._begun = False  # whether SCF has accepted a write of the change after those
        self.blocked: list[str] = []
        self.created = self.updated = self.unchanged_count = 0

    def _print(self, line: str) -> None:
        if self.out is not None:
            print(line, file=self.out, flush=True)

    def _change(self, lines: list[str]) -> bool:
        self.settle()  # a step records its next change once its last one is made
        self.changes.append(lines)
        for line in lines:
            self._print(line)
        return not self.dry_run

    def create(self, what: str, detail: str = "") -> bool:
        """Record a creation; True when it is to be made now (an apply)."""
        self.created += 1
        return self._change([f"+ create {what}" + (f" ({detail})" if detail else "")])

    def replace(self, what: str, old: str, detail: str) -> bool:
        """Record a resource deleted and created anew, one change counted as a creation: its
        removal's line, then its creation's; True when it is to be made now."""
        self.created += 1
        return self._change([f"- remove {what} ({old})", f"+ create {what} ({detail})"])

    def update(self, what: str, changed: Sequence[Diff]) -> bool:
        """Record an update with its changed fields, or the resource as unchanged when there
        are none; True when the update is to be made now."""
        if not changed:
            self.unchanged()
            return False
        self.updated += 1
        return self._change([f"~ update {what} {diff.render()}" for diff in changed])

    def remove(self, what: str) -> bool:
        self.updated += 1
        return self._change([f"- remove {what}"])

    def unchanged(self) -> None:
        self.unchanged_count += 1

    def block(self, message: str) -> None:
        self.blocked.append(message)
        self._print(f"! {message}")

    def note(self, line: str) -> None:
        self._print(f"> {line}")

    def answer(self, line: str) -> None:
        """A line that is no change: what an invoked function answered."""
        self._print(line)

    def settle(self) -> None:
        """Every change recorded so far is made: the step of the walk that recorded the last
        one has returned. Until then, a failure leaves that change not made, or not in full."""
        self._made = len(self.changes)
        self._begun = False

    def begun(self) -> None:
        """SCF has accepted a write of the change being made: a failure from here on leaves
        it begun (a function Creating, or deleted before its replacement), not untouched."""
        if len(self.changes) > self._made:
            self._begun = True

    def made_in_part(self, count: int) -> None:
        """The first `count` lines of the change being made are made (a function's new code,
        sent apart from its configuration): from here on they are a change of their own."""
        change = self.changes[-1]
        self.changes[-1:] = [change[:count], change[count:]]
        self._made = len(self.changes) - 1
        self._begun = False

    def summary(self) -> str:
        if self.dry_run:
            counts = f"{self.created} to create, {self.updated} to update"
            return f"plan: {counts}, {self.unchanged_count} unchanged"
        counts = f"{self.created} created, {self.updated} updated"
        return f"apply: {counts}, {self.unchanged_count} unchanged"

    def done(self) -> list[list[str]]:
        """In an apply stopped by a failure: the changes made before it, each as its lines."""
        return self.changes[: self._made]

    def failed(self) -> Stopped:
        """The change the failure stopped (no lines when it came between changes)."""
        lines = [line for change in self.changes[self._made :] for line in change]
        return Stopped(lines, self._begun)
