"""`python -m infra.deploy plan|apply [--config serverless.yml] [--dist dist]`.

Exit status: 0 done (a plan: nothing blocks it); 1 an API call or db-migrate failed (what
was done before is listed), or the account changed after the preview so that a change could
not be made (the rest was); 2 the deploy could not start or a plan has a change SCF cannot
make (nothing was written).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from infra.deploy import invocation, reconcile, target
from infra.deploy.context import Context
from infra.deploy.cos import PackageStore
from infra.deploy.plan import Plan
from infra.deploy.scf import ApiError, ScfApi
from infra.deploy.settings import ConfigurationError, read
from infra.manifest import DEFAULT_CONFIG, ROOT, ManifestError
from infra.routes import MappingError


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy", description=__doc__)
    parser.add_argument("command", choices=("plan", "apply"))
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="make package's output")
    return parser.parse_args(argv)


def _failed(out: TextIO, plan: Plan, error: Exception) -> int:
    print(f"error: {error}", file=out)
    done = plan.done()
    if done:
        print(f"done before the failure ({len(done)} changes):", file=out)
        for line in (line for change in done for line in change):
            print(f"  {line}", file=out)
    else:
        print("nothing was changed before the failure", file=out)
    stopped = plan.failed()
    for line in stopped.lines:
        print(f"{'begun, not finished' if stopped.begun else 'not done'}: {line}", file=out)
    if isinstance(error, invocation.InvokeFailed):
        print("not done: the other functions and the domain (still as they were)", file=out)
    return 1


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO = sys.stdout,
) -> int:
    args = _parse(argv)
    try:
        deployment = read(args.config, os.environ if environ is None else environ)
        wanted = target.build(deployment, args.dist)
    except (ConfigurationError, ManifestError, MappingError) as error:
        print(f"deploy: {error}", file=out)
        return 2
    api = ScfApi(deployment.settings, deployment.manifest.namespace)
    store = PackageStore(deployment.settings)

    # Every apply is previewed first, in full and silently: a change SCF cannot make stops
    # it before its first write rather than halfway.
    preview = Plan(out if args.command == "plan" else None, dry_run=True)
    try:
        reconcile.walk(Context(api, store, wanted, preview))
    except ApiError as error:
        print(f"error: {error}\nnothing was changed", file=out)
        return 1
    if args.command == "plan":
        print(preview.summary(), file=out)
        return 2 if preview.blocked else 0
    if preview.blocked:
        for message in preview.blocked:
            print(f"! {message}", file=out)
        print("apply: stopped before any write", file=out)
        return 2

    plan = Plan(out, dry_run=False)
    try:
        reconcile.walk(Context(api, store, wanted, plan))
    except (ApiError, invocation.InvokeFailed) as error:
        return _failed(out, plan, error)
    print(plan.summary(), file=out, flush=True)
    if plan.blocked:
        # The account changed between the preview and this walk (a function began deleting):
        # the rest is made, these are not, and the deploy is not done.
        for message in plan.blocked:
            print(f"apply: not done: {message.partition(':')[0]} (! above)", file=out)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
