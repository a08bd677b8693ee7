"""Tasks as the API shows them: the Task and Step shapes of the contract, an output kept in
COS shown as a StoredOutput with a fresh presigned GET (app.storage.outputs)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select

from app.clock import iso
from app.db.tables import task_steps, tasks
from app.db.transaction import Transaction
from app.storage import outputs


def _steps(task_id: str, rows: Iterable[Mapping[Any, Any]]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    by_position: dict[int, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["position"], r["branch"])):
        if row["branch"] < 0:
            step = {
                "id": row["step_id"],
                "type": row["type"],
                "status": row["status"],
                "output": outputs.render(task_id, row["output"]),
                "error": row["error"],
                "branches": [] if row["type"] == "fork" else None,
            }
            by_position[row["position"]] = step
            steps.append(step)
        else:
            by_position[row["position"]]["branches"].append(
                {
                    "index": row["branch"],
                    "status": row["status"],
                    "output": outputs.render(task_id, row["output"]),
                    "error": row["error"],
                }
            )
    return steps


def task_view(
    task: Mapping[Any, Any], step_rows: Iterable[Mapping[Any, Any]] | None
) -> dict[str, Any]:
    """The task as the API shows it; `step_rows` None for a list item (no steps)."""
    return {
        "id": task["id"],
        "user_id": task["user_id"],
        "pipeline_id": task["pipeline_id"],
        "status": task["status"],
        "cost": task["cost"],
        "input": task["input"],
        "output": outputs.render(task["id"], task["output"]),
        "error": task["error"],
        "steps": None if step_rows is None else _steps(task["id"], step_rows),
        "created_at": iso(task["created_at"]),
        "updated_at": iso(task["updated_at"]),
        "finished_at": iso(task["finished_at"]),
    }


_STEP_COLUMNS = (
    task_steps.c.task_id,
    task_steps.c.position,
    task_steps.c.branch,
    task_steps.c.step_id,
    task_steps.c.type,
    task_steps.c.status,
    task_steps.c.output,
    task_steps.c.error,
)


def load_views(conn: Transaction, task_rows: Sequence[Mapping[Any, Any]]) -> list[dict[str, Any]]:
    """Views of these tasks with their steps, read in one query."""
    if not task_rows:
        return []
    ids = [row["id"] for row in task_rows]
    grouped: dict[str, list[Mapping[Any, Any]]] = {task_id: [] for task_id in ids}
    for row in conn.execute(select(*_STEP_COLUMNS).where(task_steps.c.task_id.in_(ids))).mappings():
        grouped[row["task_id"]].append(row)
    return [task_view(row, grouped[row["id"]]) for row in task_rows]


def load_view(conn: Transaction, task_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(tasks).where(tasks.c.id == task_id)).mappings().first()
    return load_views(conn, [row])[0] if row is not None else None
