"""What each row of a task may take of its detail view, so that `GET /tasks/{id}` always
fits in one synchronous SCF answer (`json_values.SCF_ANSWER_MAX_BYTES`).

Each output is bounded (STORAGE_INLINE_MAX_BYTES inline, a StoredOutput past it), but a
task's rows are not: up to MAX_STEPS steps, forks of up to PIPELINE_MAX_BRANCHES branches.
So a task's inline limit depends on its width. Its view, in the worst case, is counted in
answer bytes (`json_values.answer_bytes`: the body escaped again inside SCF's payload, at
most three times its compact JSON):

- fixed: the task's skeleton with an input of TASK_INPUT_MAX_BYTES and the longest error,
  and each row's skeleton (a step's, a branch's) with the longest error;
- shares: one per step and per branch (its `output`), one more per branch (its value again
  in its fork's results), and the task's own `output`, which repeats its last step's: one
  share, or one plus one per branch when that step is a fork.

`share` is what is left of VIEW_MAX_ANSWER_BYTES after the fixed part, divided by the
shares. A step's or a branch's output stays inline while its compact JSON is at most
STORAGE_INLINE_MAX_BYTES and what it shows in the answer at most one share; a fork's results
at most one share per branch and one for the fork. Past that, it goes to COS
(app.storage.outputs), shown as a StoredOutput, which never costs more than
`stored_output_max_bytes`. So a share smaller than that (the task's rows alone, each with a
StoredOutput, do not fit) is a task refused at creation: `too_wide`. A share at least that
large also means an output is never stored when its reference would show larger than it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from app import json_values
from app.clock import iso
from app.config import Settings, get_settings
from app.errors import ErrorCode
from app.storage.objects import task_prefix

# The view's budget in answer bytes: SCF's 6,000,000 less a million of room for the
# answer's own envelope (status, headers) and for nothing else: the rest is counted here.
VIEW_MAX_ANSWER_BYTES = 5_000_000

# Tencent's STS documents the temporary credentials of a role (the run role's, which sign
# every presigned URL) as a Token of at most 4,096 bytes and a TmpSecretId of at most 1,024
# (STS API, data type Credentials). Both sit in the URL's query (x-cos-security-token,
# q-ak) as issued: URL-safe text ([A-Za-z0-9_-], about 300 bytes in the tokens COS's own
# examples show), so taken at those lengths, unescaped.
STS_TOKEN_MAX_BYTES = 4096
STS_SECRET_ID_MAX_BYTES = 1024
# The rest of a COS presigned query: q-sign-algorithm, the two time ranges (`%3B` between
# their ends), the header and parameter lists, the 40 hex digits of q-signature and the
# parameters' names: about 260 bytes, taken as this many.
PRESIGN_QUERY_REST_BYTES = 512
# The longest key of a task's output: `tasks/{id}/{step}.{branch}.json`, a step id of 64,
# a branch index of up to 6 digits (PIPELINE_MAX_BRANCHES is at most 1000).
_KEY_MAX = task_prefix("x" * 22) + "x" * 64 + "." + "9" * 6 + ".json"
_LONGEST_TIME = iso(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc))
_LONGEST_CODE = max((code.value for code in ErrorCode), key=len)


def stored_output_max_bytes(settings: Settings | None = None) -> int:
    """The most answer bytes one StoredOutput (`{"stored", "url", "size_bytes",
    "expires_at"}`) can take, its URL presigned for this bucket under the longest
    credentials Tencent documents."""
    settings = settings or get_settings()
    return _stored_output_max_bytes(settings.cos_bucket, settings.cos_region, settings.cos_endpoint)


@lru_cache(maxsize=8)
def _stored_output_max_bytes(bucket: str, region: str, endpoint: str) -> int:
    origin = max(
        len(f"https://{bucket}.cos.{region}.myqcloud.com"),
        len(f"http://{endpoint}/{bucket}"),  # COS_ENDPOINT: the bucket in the path
    )
    query = PRESIGN_QUERY_REST_BYTES + STS_SECRET_ID_MAX_BYTES + STS_TOKEN_MAX_BYTES
    url = "u" * (origin + 1 + len(_KEY_MAX) + 1 + query)
    shown = {"stored": True, "url": url, "size_bytes": 10**15, "expires_at": _LONGEST_TIME}
    return json_values.answer_bytes(shown)


@dataclass(frozen=True)
class Shape:
    """A task's rows: its steps, each fork's branches (in step order), and how many
    branches its last step has (0 when that is no fork)."""

    steps: int
    forks: tuple[int, ...]
    last_fork: int

    @property
    def rows(self) -> int:
        return self.steps + sum(self.forks)


def _error_bytes() -> int:
    """A row's or the task's longest `error`: the longest code, and a message of
    ERROR_MESSAGE_MAX_BYTES (app.tasks.lifecycle cuts a longer one), escaped three times."""
    bare = {"code": _LONGEST_CODE, "message": ""}
    return json_values.answer_bytes(bare) + 3 * json_values.ERROR_MESSAGE_MAX_BYTES


def _without(skeleton: dict[str, Any], *nulls: str) -> int:
    """The skeleton's answer bytes with its `nulls` (each `null` in it) not counted."""
    return json_values.answer_bytes(skeleton) - 4 * len(nulls)


@dataclass(frozen=True)
class _Skeletons:
    """Answer bytes of the view's parts without their outputs."""

    task: int
    step: int  # a step row's, with the comma after it
    branch: int  # a branch row's, likewise


@lru_cache(maxsize=1)
def _skeletons() -> _Skeletons:
    """Answer bytes of the task's, a step row's and a branch row's skeletons, each without
    its output and with the longest values the code allows; a row's includes the comma
    between it and the next."""
    error = "e" * _error_bytes()  # as long in the answer as the longest error
    task = {
        "id": "x" * 22,
        "user_id": "x" * 22,
        "pipeline_id": "x" * 64,
        "status": "cancelled",
        "cost": 2**31 - 1,
        "input": None,
        "output": None,
        "error": error,
        "steps": [],
        "created_at": _LONGEST_TIME,
        "updated_at": _LONGEST_TIME,
        "finished_at": _LONGEST_TIME,
    }
    step = {
        "id": "x" * 64,
        "type": "fork",
        "status": "succeeded",
        "output": None,
        "error": error,
        "branches": None,
    }
    branch = {"index": 999_999, "status": "succeeded", "output": None, "error": error}
    task_bytes = _without(task, "input", "output") + 3 * json_values.TASK_INPUT_MAX_BYTES
    return _Skeletons(task_bytes, _without(step, "output") + 1, _without(branch, "output") + 1)


def share(shape: Shape) -> int:
    """Answer bytes each share of the task's view may take (see the module docstring)."""
    skeletons = _skeletons()
    branches = sum(shape.forks)
    fixed = skeletons.task + skeletons.step * shape.steps + skeletons.branch * branches
    shares = shape.steps + 2 * branches + 1 + shape.last_fork
    return (VIEW_MAX_ANSWER_BYTES - fixed) // shares


def too_wide(shape: Shape, settings: Settings | None = None) -> bool:
    """Whether the task's rows alone, each with a StoredOutput, could not fit the view."""
    return share(shape) < stored_output_max_bytes(settings)


@dataclass(frozen=True)
class Inline:
    """How large an output may be and stay inline: its compact JSON at most `max_bytes`
    (STORAGE_INLINE_MAX_BYTES), and what it shows in the answer at most
    `max_answer_bytes`."""

    max_bytes: int
    max_answer_bytes: int


@dataclass(frozen=True)
class Limits:
    """A task's inline limits: for a step's or a branch's output, and for a fork's results."""

    share: int
    max_bytes: int

    @property
    def row(self) -> Inline:
        return Inline(self.max_bytes, self.share)

    def results(self, branches: int) -> Inline:
        """A fork's results: its own share and one per branch (each value shown again)."""
        return Inline(self.max_bytes, self.share * (1 + branches))


def limits(shape: Shape, settings: Settings | None = None) -> Limits:
    """The task's limits. A task created too wide (only one from before the limit, or
    under other settings) keeps a share of one StoredOutput: every output that can go to
    COS goes, and its view is the smallest it can be."""
    settings = settings or get_settings()
    floor = stored_output_max_bytes(settings)
    return Limits(max(share(shape), floor), settings.storage_inline_max_bytes)
