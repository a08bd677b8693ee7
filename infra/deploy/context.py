"""What every step of the walk over the account is given: the API, the package store, what
the account should hold, and the plan its changes are recorded in (and, in an apply, made)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.deploy.cos import PackageStore
from infra.deploy.plan import Plan
from infra.deploy.scf import ScfApi
from infra.deploy.target import Target


@dataclass(frozen=True)
class Context:
    api: ScfApi
    store: PackageStore
    target: Target
    plan: Plan

    @property
    def namespace(self) -> str:
        return self.api.namespace

    def write(self, action: str, **params: Any) -> dict[str, Any]:
        """A write of the change being made: once SCF accepts it, a failure leaves the
        change begun rather than not done."""
        answer = self.api.write(action, **params)
        self.plan.begun()
        return answer
