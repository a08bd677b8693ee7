"""A task's plan (its input and parsed steps, fixed when the task was created), kept per
instance, and the call each row of the plan stands for.

Owns: the per-instance cache of plans and which call a step's or a branch's row makes.
Never reads or writes the database (the worker reads the task row and hands it over), and
never decides whether a call is due: that is the claim's (`app.runner.rows`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from app.pipeline.definition import ForkStep, HttpCall, SimCall, Step, parse_steps, shape_of
from app.storage.shares import Limits, limits


@dataclass(frozen=True)
class Plan:
    user_id: str  # the task's owner: whose uploads its input may name
    input: Any
    steps: list[Step]
    # How large an output may be and stay inline, from the task's width: every row's
    # output, and its fork's results, are kept (app.storage.outputs) within these.
    limits: Limits


class Plans:
    """Tasks' input and parsed steps, which never change after creation, kept per
    instance (least recently used out first). Small: an SCF instance runs one message at
    a time, so the hits come from the last few tasks, and an input may be large."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._items: OrderedDict[str, Plan] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, task_id: str) -> Plan | None:
        with self._lock:
            plan = self._items.get(task_id)
            if plan is not None:
                self._items.move_to_end(task_id)
            return plan

    def remember(self, task_id: str, user_id: str, task_input: Any, raw_steps: Any) -> Plan:
        steps = parse_steps(raw_steps)
        plan = Plan(user_id, task_input, steps, limits(shape_of(steps, task_input)))
        with self._lock:
            self._items[task_id] = plan
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return plan


plans = Plans()


@dataclass(frozen=True)
class Call:
    """What a row stands for: the call to make and the `input` it is made with."""

    step: HttpCall | SimCall
    input: Any


def call_of(step: Step, task_input: Any, branch: int) -> Call | None:
    """The call of a step's row (`branch` -1) or of one branch of a fork; None for a fork's
    own row, and for a branch the fork does not have."""
    if isinstance(step, ForkStep):
        if branch < 0 or branch >= len(step.items(task_input)):
            return None
        item = task_input if step.branches is not None else step.items(task_input)[branch]
        return Call(step.branch_step(branch), item)
    return Call(step, task_input) if branch < 0 else None
