"""The pipeline definition language of the API contract: `http`, `fork` and `sim` steps.

Validation here is what `PUT /admin/pipelines/{id}` enforces (422 on any failure): step ids
unique, a fork either `for_each` + `step` or `branches`, no fork inside a fork, every
`http` host in PIPELINE_ALLOWED_HOSTS (matched by host name, case-insensitive, and by port
when the entry gives one). A task keeps
the validated steps it was created with, so the engine reads them back with the same models.

PIPELINE_MAX_BRANCHES caps a `branches` fork when the pipeline is saved, and every fork's
width when a task is created (`POST /tasks`). Neither is re-checked when a stored
task is read back: its branch rows were made when it was created, and lowering the limit
must not strand the branches already running.

A definition whose steps and `branches` forks alone make every task too wide for its view
to fit one answer (app.storage.shares) is refused when saved, as each of its tasks would be.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app import vault
from app.config import get_settings
from app.storage import shares

STEP_ID = r"^[A-Za-z0-9_-]{1,64}$"
MAX_HEADERS = 20
MAX_HEADER_VALUE = 8192
# What the runner sets itself, or what would change how the request is framed.
RESERVED_HEADERS = frozenset(
    {"idempotency-key", "content-type", "content-length", "host", "transfer-encoding", "connection"}
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
PIPELINE_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_STEPS = 50
# Stored steps are read back with whatever limit held when they were saved, up to this.
MAX_BRANCHES = 1000
MAX_COST = 1_000_000
MAX_TIMEOUT_S = 120


def sendable_header_value(value: str) -> bool:
    """Whether an HTTP header can carry `value` as it is: Latin-1 (what http.client encodes
    a header with), no control characters (CR and LF would end the header); tab allowed."""
    try:
        encoded = value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not any((byte < 0x20 and byte != 0x09) or 0x7F <= byte < 0xA0 for byte in encoded)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpCall(_Strict):
    type: Literal["http"]
    url: str = Field(max_length=2048)
    # The worker function itself times out at 300 s: one call must leave room for the
    # invocation's other work and for a retry to hand over to a fresh invocation.
    timeout_s: float = Field(30, gt=0, le=MAX_TIMEOUT_S)
    retries: int = Field(2, ge=0, le=10)
    # Sent with the call; `{{secrets.NAME}}` in a value is filled at call time (app.vault).
    headers: dict[str, str] | None = Field(None, max_length=MAX_HEADERS)

    @field_validator("headers")
    @classmethod
    def _sendable_headers(
        cls, headers: dict[str, str] | None, info: ValidationInfo
    ) -> dict[str, str] | None:
        # Steps stored with a task before values had to be Latin-1 still read back: such a
        # header fails its call, naming the header (app.runner.calls).
        stored = bool(info.context and info.context.get("stored"))
        seen: set[str] = set()
        for name, value in (headers or {}).items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a header name")
            # Names ignore case: two spellings of one would send the header twice.
            if name.lower() in seen and not stored:
                raise ValueError(f"{name} is given twice (header names ignore case)")
            seen.add(name.lower())
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"{name} is set by the runner and cannot be given")
            if len(value) > MAX_HEADER_VALUE or not value.isprintable():
                raise ValueError(f"the value of {name} is not one line of printable text")
            if not stored and not sendable_header_value(value):
                raise ValueError(f"the value of {name} is not Latin-1 text a header can carry")
            for reference in vault.referenced([value]):
                if not vault.NAME.fullmatch(reference):
                    raise ValueError(f"{{{{secrets.{reference}}}}} names no possible secret")
        return headers

    @field_validator("url")
    @classmethod
    def _allowed_url(cls, url: str, info: ValidationInfo) -> str:
        host, port = _host_port(url)
        stored = bool(info.context and info.context.get("stored"))
        if not stored and not get_settings().allows_upstream(host, port):
            raise ValueError(f"{host}:{port} is not in PIPELINE_ALLOWED_HOSTS")
        return url

    @property
    def host_key(self) -> str:
        """`host:port`, the unit PIPELINE_HOST_CONCURRENCY counts."""
        host, port = _host_port(self.url)
        return f"{host}:{port}"


@lru_cache(maxsize=256)  # the engine asks for every call's host_key
def _host_port(url: str) -> tuple[str, int]:
    """The host (lower case) and port the call really goes to.

    The allow-list is checked on the host the call connects to, which urllib3's parser
    finds; `urlsplit` must agree with it. Parsers disagree on backslashes, userinfo and
    stray whitespace (`http://evil.example\\@localhost/` is localhost to one and
    evil.example to the other), so such URLs are refused outright."""
    from urllib3.exceptions import LocationParseError  # cold start: only when a URL is read
    from urllib3.util import parse_url  # cold start: only when a URL is read

    if not url.isascii() or not url.isprintable() or any(ch in url for ch in " \\@"):
        raise ValueError("must not contain spaces, control characters, `\\` or `@`")
    parts = urlsplit(url)
    try:
        port = parts.port
        parsed = parse_url(url)
    except (ValueError, LocationParseError) as exc:
        raise ValueError("has an invalid port or host") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http or https URL with a host")
    host = (parsed.host or "").strip("[]").lower()
    if parsed.scheme != parts.scheme or host != parts.hostname.lower() or parsed.port != port:
        raise ValueError("has a host that does not parse the same way everywhere")
    return host, port or (443 if parts.scheme == "https" else 80)


class SimCall(_Strict):
    type: Literal["sim"]
    duration_ms: int = Field(200, ge=0, le=60_000)
    fail: bool = False


BranchStep = Annotated[HttpCall | SimCall, Field(discriminator="type")]


class HttpStep(HttpCall):
    id: str = Field(pattern=STEP_ID)


class SimStep(SimCall):
    id: str = Field(pattern=STEP_ID)


class ForkStep(_Strict):
    id: str = Field(pattern=STEP_ID)
    type: Literal["fork"]
    for_each: str | None = Field(None, pattern=r"^input(\.[A-Za-z0-9_-]+)+$")
    step: BranchStep | None = None
    branches: list[BranchStep] | None = Field(None, min_length=1, max_length=MAX_BRANCHES)
    min_success: int | None = Field(None, ge=0)
    # Each branch is upstream work: a task pays this per branch, on top of the pipeline's cost.
    cost_per_branch: int = Field(0, ge=0, le=MAX_COST)

    @field_validator("branches")
    @classmethod
    def _not_too_many(
        cls, branches: list[HttpCall | SimCall] | None, info: ValidationInfo
    ) -> list[HttpCall | SimCall] | None:
        stored = bool(info.context and info.context.get("stored"))
        limit = get_settings().pipeline_max_branches
        if branches is not None and not stored and len(branches) > limit:
            raise ValueError(f"more than PIPELINE_MAX_BRANCHES ({limit}) branches")
        return branches

    @model_validator(mode="after")
    def _one_shape(self) -> ForkStep:
        if self.branches is not None:
            if self.for_each is not None or self.step is not None:
                raise ValueError("a fork has either `branches` or `for_each` with `step`")
            if self.min_success is not None and self.min_success > len(self.branches):
                raise ValueError("min_success is larger than the number of branches")
        elif self.for_each is None or self.step is None:
            raise ValueError("a fork needs `branches`, or `for_each` together with `step`")
        return self

    def items(self, task_input: dict[str, Any], limit: int | None = None) -> list[Any]:
        """The fork's work: one entry per branch (the item, or the branch's step). `limit`
        caps either: a new task passes PIPELINE_MAX_BRANCHES (a `branches` fork saved while
        the limit was higher is refused too), a stored task passes nothing (it runs the
        width it was created with)."""
        if self.branches is not None:
            if limit is not None and len(self.branches) > limit:
                raise ItemsError(
                    f"step {self.id!r} has {len(self.branches)} branches, at most {limit} "
                    "(PIPELINE_MAX_BRANCHES)"
                )
            return list(self.branches)
        return resolve_items(self.for_each or "", task_input, limit)

    def branch_step(self, index: int) -> HttpCall | SimCall:
        if self.branches is not None:
            return self.branches[index]
        assert self.step is not None
        return self.step


Step = Annotated[HttpStep | SimStep | ForkStep, Field(discriminator="type")]
_STEPS: TypeAdapter[list[Step]] = TypeAdapter(list[Step])


class PipelineDefinition(_Strict):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=500)
    cost: int = Field(ge=0, le=MAX_COST)
    enabled: bool = True
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    def secret_names(self) -> set[str]:
        """The secrets the steps' headers name (`{{secrets.NAME}}`)."""
        calls: list[HttpCall | SimCall] = []
        for step in self.steps:
            if isinstance(step, ForkStep):
                calls += [step.step] if step.step is not None else list(step.branches or [])
            else:
                calls.append(step)
        return vault.referenced(
            value
            for call in calls
            if isinstance(call, HttpCall)
            for value in (call.headers or {}).values()
        )

    @model_validator(mode="after")
    def _unique_ids(self) -> PipelineDefinition:
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used twice")
            seen.add(step.id)
        return self

    @model_validator(mode="after")
    def _fits_a_view(self, info: ValidationInfo) -> PipelineDefinition:
        """Steps and `branches` forks that alone make every task too wide to show
        (app.storage.shares) would have every `POST /tasks` refused: refused here instead.
        A `for_each` fork's width comes from each task's input, judged at creation."""
        if info.context and info.context.get("stored"):
            return self
        shape = shape_of(self.steps, None)
        if shares.too_wide(shape):
            raise ValueError(
                f"the steps and `branches` forks make {shape.rows} steps and branches: a "
                "task's view could not show them in one answer, even with every output in COS"
            )
        return self


def parse_steps(raw: Any) -> list[HttpStep | SimStep | ForkStep]:
    """Steps stored with a task, read back. Hosts are not re-checked: the allow-list applied
    when the pipeline was saved, and a task runs what it was created with."""
    return _STEPS.validate_python(raw, context={"stored": True})


def shape_of(steps: Sequence[Step], task_input: Any) -> shares.Shape:
    """The rows a task of these steps has: each fork as wide as the input makes it (the
    width `POST /tasks` fixed, read back uncapped). With `task_input` None, a `for_each`
    fork counts no branch: the rows every task of the steps has at least."""
    widths = [
        (0 if task_input is None and step.branches is None else len(step.items(task_input)))
        if isinstance(step, ForkStep)
        else None
        for step in steps
    ]
    forks = tuple(width for width in widths if width is not None)
    last = widths[-1] if widths else None
    return shares.Shape(len(widths), forks, last or 0)


class ItemsError(ValueError):
    """The task input does not hold the list a `for_each` fork names."""


def resolve_items(path: str, task_input: dict[str, Any], limit: int | None = None) -> list[Any]:
    """`input.a.b` -> task_input["a"]["b"], which must be a list (of at most `limit` items,
    when one is given)."""
    value: Any = task_input
    for part in path.split(".")[1:]:
        if not isinstance(value, dict) or part not in value:
            raise ItemsError(f"{path} is missing from the input")
        value = value[part]
    if not isinstance(value, list):
        raise ItemsError(f"{path} must be a list")
    if limit is not None and len(value) > limit:
        raise ItemsError(f"{path} has {len(value)} items, at most {limit} (PIPELINE_MAX_BRANCHES)")
    return value
