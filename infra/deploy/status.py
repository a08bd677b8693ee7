"""What the Status SCF reports of a function or a layer version means to a deploy.

SCF's own table (https://cloud.tencent.com/document/api/583/115197, which tccli's
scf/v20180416/api.json links from `GetFunctionResponse.Status`; English:
https://www.tencentcloud.com/document/product/583/37883): a function is Creating, Updating,
Publishing or Deleting while a write is under way, Active once usable, and CreateFailed,
UpdateFailed, PublishFailed or DeleteFailed when that write failed; `StatusReasons`
({ErrorCode, ErrorMessage}) says why, `StatusDesc` describes the state. A layer version is
Publishing, Active, PublishFailed, Deleting, DeleteFailed or Deleted. What each failed state
leaves, and what this deploy does with it:

- CreateFailed: "if the function's information was generated, it can be deleted and created
  again" (the table). It never became Active, so it never ran: the deploy deletes it and
  creates it anew, as Tencent's own deploy tool does, because a function whose creation
  failed cannot be updated (serverless-tencent/tencent-component-toolkit@4b0b78b
  src/modules/scf/entities/scf.ts `getInitialStatus`, "创建失败的函数没法更新").
- UpdateFailed, PublishFailed: a failed update or publish "does not affect the versions
  already published; an invocation runs the content from before the update" (the table's
  note). The function keeps serving; the toolkit updates it again (code, then
  configuration). What GetFunction shows of a failed update (what was asked or what runs) is
  not documented, so the deploy sends the code and the whole configuration again rather
  than trusting a comparison.
- Deleting, DeleteFailed: the function is on its way out (SCF answers nothing about what
  a failed deletion leaves). The deploy writes nothing and stops, naming the function, its
  state, SCF's reason and what to do (the toolkit stops on DeleteFailed too); so does a
  status the table does not list.
- A layer version PublishFailed, Deleting, DeleteFailed or Deleted is never named by a
  function: the deploy publishes the content again as a new version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ACTIVE = "Active"
# A write under way: wait for it to end (Deleting ends with no function at all).
TRANSITIONS = ("Creating", "Updating", "Publishing")
CREATE_FAILED = "CreateFailed"
# Still serving what it ran before: update it again, in full.
UPDATE_AGAIN = ("UpdateFailed", "PublishFailed")
LAYER_UNUSABLE = ("PublishFailed", "Deleting", "DeleteFailed", "Deleted")


@dataclass(frozen=True)
class Status:
    """A resource's Status and SCF's reason for it (its StatusReasons, else StatusDesc)."""

    value: str
    reason: str = ""

    @classmethod
    def of(cls, answer: dict[str, Any]) -> Status:
        reasons = answer.get("StatusReasons") or []
        reason = "; ".join(
            ": ".join(filter(None, (r.get("ErrorCode"), r.get("ErrorMessage")))) for r in reasons
        )
        return cls(str(answer.get("Status") or ""), reason or str(answer.get("StatusDesc") or ""))

    def render(self) -> str:
        return f"{self.value} ({self.reason})" if self.reason else self.value


def function_advice(namespace: str, name: str, status: str) -> str:
    """What a function in this status means for the deploy, for the deploy's report. A
    command it gives names the namespace: without `--Namespace`, tccli asks `default`, which
    holds no function of a stage deployed into its own, or holds the copy left behind there
    (README "Moving a stage to its own namespace")."""
    where = f"--Namespace {namespace} --FunctionName {name}"
    if status == CREATE_FAILED:
        return "it never ran; the next deploy deletes it and creates it again"
    if status in UPDATE_AGAIN:
        return (
            "it still runs what it ran before; the next deploy sends its code and "
            "configuration again"
        )
    if status == "Deleting":
        return (
            f"SCF is deleting it; deploy again once `tccli scf GetFunction {where}` answers "
            "ResourceNotFound.Function"
        )
    if status == "DeleteFailed":
        return (
            f"SCF failed to delete it; delete it again (`tccli scf DeleteFunction {where}`, or "
            "ask Tencent Cloud support if that fails too), then deploy again"
        )
    return "a status SCF does not document: see it in the SCF console, then deploy again"


def layer_advice(status: str) -> str:
    if status in LAYER_UNUSABLE:
        return "no function is moved to it; the next deploy publishes the content again"
    return "a status SCF does not document: see it in the SCF console, then deploy again"
