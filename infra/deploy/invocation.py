"""How each function is invoked: its Function URL, its timers, its async retry policy, and
the synchronous invocation of db-migrate, before the other functions are deployed.

- Function URL: an `http` trigger on every `http: true` function and every web function
  (`web:`; with WebSocket on, the URL speaks WSS), AuthType NONE (the API's JWT does the
  rest), reachable from the internet (the custom domain fronts it); found by its type,
  whatever SCF named it; updated in place (`UpdateTrigger`) when its auth, network or
  enabled state differ. The URL of a function that is neither any more is removed only
  once the custom domain no longer maps its paths (infra.deploy.reconcile calls
  `remove_urls` after the domain): SCF refuses to delete a URL a domain still maps
  (`FailedOperation.DeleteTrigger.UrlUsed`; ListTriggers names the domain's paths as the
  URL's BoundResources), and the domain would meanwhile send those paths to nothing.
- Timers: one `timer` trigger per `timers:` entry, by name; compared on cron (SCF answers
  `{"cron": ...}` for the cron it was given), enabled state (OPEN/CLOSE in, 1/0 out) and
  argument; a changed one is updated in place (`UpdateTrigger`, which updates a timer's
  Enable, TriggerDesc, Description and CustomArgument, as the action's own text in tccli's
  scf api.json says, tests/fakes/schemas), so a change SCF refuses leaves the timer as it
  was, where deleting it first left the function with none. An argument taken out of the
  file is sent empty: that text has a CustomArgument left out keep its value and an empty
  one empty it; Enable, which may not be empty, is always OPEN or CLOSE. One the file no
  longer declares is removed. Trigger types the file cannot declare (cos, cls, ckafka) are
  left alone.
- Async config: `UpdateFunctionEventInvokeConfig` when `GetFunctionEventInvokeConfig`'s
  first RetryNum or MsgTTL differ, and always on a function this deploy creates.
"""

from __future__ import annotations

import json
from typing import Any

from infra.deploy.context import Context
from infra.deploy.plan import compare
from infra.deploy.scf import ApiError
from infra.deploy.target import QUALIFIER, FunctionTarget

URL_TRIGGER = "function-url"
URL_DESC: dict[str, Any] = {
    "AuthType": "NONE",
    "NetConfig": {"EnableIntranet": False, "EnableExtranet": True},
}
# As the trigger description docs ask (https://cloud.tencent.com/document/product/583/39901):
# compact JSON. What SCF reports back is compared by its fields, never as text, so a URL
# created with spaces before is no change.
URL_DESC_TEXT = json.dumps(URL_DESC, separators=(",", ":"))


class InvokeFailed(RuntimeError):
    pass


def _desc(trigger: dict[str, Any]) -> dict[str, Any]:
    raw = trigger.get("TriggerDesc") or ""
    try:
        found = json.loads(raw)
    except ValueError:
        return {"cron": raw}  # a timer's cron as it was sent
    return found if isinstance(found, dict) else {}


def _url_state(trigger: dict[str, Any] | None) -> tuple[Any, ...]:
    desc = _desc(trigger) if trigger else URL_DESC
    net = desc.get("NetConfig") or {}
    enabled = True if trigger is None else str(trigger.get("Enable")) in ("1", "OPEN")
    return desc.get("AuthType"), net.get("EnableExtranet"), net.get("EnableIntranet"), enabled


def _has_url(fn: FunctionTarget) -> bool:
    return fn.spec.http or fn.spec.web is not None


def stale_urls(fn: FunctionTarget, triggers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Function URLs of a function that should have none, for `remove_urls` to delete
    once the domain no longer maps them."""
    return [] if _has_url(fn) else [t for t in triggers if t.get("Type") == "http"]


def remove_urls(ctx: Context, fn: FunctionTarget, urls: list[dict[str, Any]]) -> None:
    for url in urls:
        if ctx.plan.remove(f"function-url {fn.name}"):
            ctx.write(
                "DeleteTrigger",
                FunctionName=fn.name,
                Namespace=ctx.namespace,
                Type="http",
                TriggerName=url["TriggerName"],
                Qualifier=url.get("Qualifier") or QUALIFIER,
            )


def function_url(ctx: Context, fn: FunctionTarget, triggers: list[dict[str, Any]]) -> str | None:
    """Create or update the URL of a function that should have one; the qualifier it serves
    (None: the function should have none, and `stale_urls` names any it has)."""
    if not _has_url(fn):
        return None
    urls = [t for t in triggers if t.get("Type") == "http"]
    what = f"function-url {fn.name}"
    base = {"FunctionName": fn.name, "Namespace": ctx.namespace, "Type": "http"}
    if not urls:
        if ctx.plan.create(what, "auth NONE, internet"):
            ctx.write(
                "CreateTrigger",
                **base,
                TriggerName=URL_TRIGGER,
                TriggerDesc=URL_DESC_TEXT,
                Qualifier=QUALIFIER,
                Enable="OPEN",
            )
        return QUALIFIER
    url = urls[0]
    qualifier = str(url.get("Qualifier") or QUALIFIER)
    names = ("auth", "internet", "intranet", "enabled")
    old, new = _url_state(url), _url_state(None)
    if ctx.plan.update(what, compare(names, old, new)):
        ctx.write(
            "UpdateTrigger",
            **base,
            TriggerName=url["TriggerName"],
            TriggerDesc=URL_DESC_TEXT,
            Qualifier=qualifier,
            Enable="OPEN",
        )
    return qualifier


def timers(ctx: Context, fn: FunctionTarget, triggers: list[dict[str, Any]]) -> None:
    existing = {t["TriggerName"]: t for t in triggers if t.get("Type") == "timer"}
    base = {"FunctionName": fn.name, "Namespace": ctx.namespace, "Type": "timer"}

    def delete(trigger: dict[str, Any]) -> None:
        ctx.write(
            "DeleteTrigger",
            **base,
            TriggerName=trigger["TriggerName"],
            Qualifier=trigger.get("Qualifier") or QUALIFIER,
        )

    for timer in fn.spec.timers:
        what = f"timer {fn.name}/{timer.name}"
        wanted = (timer.cron, timer.enabled, timer.argument or None)
        params: dict[str, Any] = {
            "TriggerName": timer.name,
            "TriggerDesc": timer.cron,
            "Qualifier": QUALIFIER,
            "Enable": "OPEN" if timer.enabled else "CLOSE",
        }
        if timer.argument:
            params["CustomArgument"] = timer.argument
        have = existing.pop(timer.name, None)
        if have is None:
            if ctx.plan.create(what, f"{timer.cron}{'' if timer.enabled else ', disabled'}"):
                ctx.write("CreateTrigger", **base, **params)
            continue
        old = (
            _desc(have).get("cron"),
            str(have.get("Enable")) in ("1", "OPEN"),
            have.get("CustomArgument") or None,
        )
        changed = compare(("cron", "enabled", "argument"), old, wanted)
        if ctx.plan.update(what, changed):
            # The trigger is named by its qualifier too; the argument is always sent, empty
            # to take it away.
            qualifier = have.get("Qualifier") or QUALIFIER
            update = {**params, "Qualifier": qualifier, "CustomArgument": timer.argument}
            ctx.write("UpdateTrigger", **base, **update)
    for name, have in sorted(existing.items()):
        if ctx.plan.remove(f"timer {fn.name}/{name}"):
            delete(have)


def async_config(ctx: Context, fn: FunctionTarget, existed: bool) -> None:
    policy = fn.spec.asynchronous
    if policy is None:
        return
    what = f"async-config {fn.name}"
    params = {
        "FunctionName": fn.name,
        "Namespace": ctx.namespace,
        "AsyncTriggerConfig": {
            "RetryConfig": [{"RetryNum": policy.retries}],
            "MsgTTL": policy.ttl_s,
        },
    }
    if not existed:
        if ctx.plan.create(what, f"retries {policy.retries}, ttl {policy.ttl_s} s"):
            ctx.write("UpdateFunctionEventInvokeConfig", **params)
        return
    answer = ctx.api.read(
        "GetFunctionEventInvokeConfig",
        FunctionName=fn.name,
        Namespace=ctx.namespace,
        Qualifier=QUALIFIER,
    )
    config = answer.get("AsyncTriggerConfig") or {}
    retries = [r.get("RetryNum") for r in config.get("RetryConfig") or []]
    old = (retries[0] if retries else None, config.get("MsgTTL"))
    changed = compare(("retries", "ttl_s"), old, (policy.retries, policy.ttl_s))
    if ctx.plan.update(what, changed):
        ctx.write("UpdateFunctionEventInvokeConfig", **params)


def invoke_after_deploy(ctx: Context, fn: FunctionTarget) -> None:
    """Invoke the function synchronously and print its answer (a plan says it would);
    InvokeFailed with the function's error message when it raised, or the call's error when
    the call itself failed."""
    if ctx.plan.dry_run:
        ctx.plan.note(f"invoke {fn.name} before the other functions")
        return
    try:
        answer = ctx.api.write(
            "Invoke",
            FunctionName=fn.name,
            Namespace=ctx.namespace,
            Qualifier=QUALIFIER,
            InvocationType="RequestResponse",
            ClientContext="{}",
        )
    except ApiError as error:
        # SCF's own error, or no answer within the call's timeout: the function may have run
        # (in part), or still be running. Either way no other function may change.
        raise InvokeFailed(
            f"{fn.name} gave no answer, so whether it ran is not known: {error}"
        ) from error
    result = answer.get("Result") or {}
    # InvokeResult is unmaintained (DEPLOY-NOTES section 4): the error message decides.
    if result.get("ErrMsg"):
        raise InvokeFailed(f"{fn.name} failed: {result['ErrMsg']}")
    ctx.plan.answer(f"invoke {fn.name}: {result.get('RetMsg')}")
