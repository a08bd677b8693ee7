"""SQLAlchemy Core table definitions: the current shape of the schema.

Migrations in app/db/migrations/versions build this shape step by step; a test checks that
the migrated database and these definitions agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.dialects import mysql

from app.db.types import UtcDateTime

metadata = MetaData()

# Columns the schema still holds that no code of this release names: the release before
# names them and serves on the migrated schema during a deploy (migrations only expand), so
# a later deploy's migration drops them. Left out of the tables below.
RETIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    # the first request's HTTP status (20261205120000)
    "idempotency_keys": ("status_code",),
}

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("phone", String(20), unique=True, nullable=True),
    Column("role", String(16), nullable=False, server_default=text("'user'")),
    Column("invite_code", String(16), unique=True, nullable=True),
    Column("referrer_id", String(32), nullable=True, index=True),
    Column("membership_expires_at", UtcDateTime(), nullable=True),
    # The plan of the latest purchase that extended the membership.
    Column("membership_plan_id", String(64), nullable=True),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("password_hash", String(100), nullable=True),
    Column("wechat_openid", String(64), unique=True, nullable=True),
    Column("wechat_unionid", String(64), nullable=True, index=True),
    Column("nickname", String(64), nullable=True),
    Column("avatar", String(512), nullable=True),
    Column("gender", String(8), nullable=False, server_default=text("'unknown'")),
    Column("quota_balance", Integer, nullable=False, server_default=text("0")),
    Column("quota_reserved", Integer, nullable=False, server_default=text("0")),
    # The admins' list, newest first (app.identity.users.admin_list).
    Index("ix_users_created", "created_at", "id"),
    # The admins who can act, found without touching any other user's row (_enabled_admins).
    Index("ix_users_role_disabled", "role", "disabled"),
)

# Sessions ended (logout, logout-all, refresh reuse, disabling) while their access tokens
# may still be presented: the database's answer when Redis, which holds the live sessions,
# cannot answer (app.identity.sessions).
ended_sessions = Table(
    "ended_sessions",
    metadata,
    Column("sid", String(32), primary_key=True),
    Column("user_id", String(32), nullable=False),
    Column("ended_at", UtcDateTime(), nullable=False, index=True),
)

invite_codes = Table(
    "invite_codes",
    metadata,
    Column("code", String(16), primary_key=True),
    Column("claimed_by", String(32), nullable=True, index=True),
    Column("claimed_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

quota_transactions = Table(
    "quota_transactions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("task_id", String(32), nullable=False, unique=True),
    Column("user_id", String(32), nullable=False, index=True),
    Column("amount", Integer, nullable=False),
    Column("phase", String(16), nullable=False),
    Column("idempotent_done", Boolean, nullable=False, server_default=true()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_quota_transactions_phase_updated", "phase", "updated_at"),
)

quota_ledger = Table(
    "quota_ledger",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("balance_delta", Integer, nullable=False),
    Column("reserved_delta", Integer, nullable=False),
    Column("balance_after", Integer, nullable=False),
    Column("reserved_after", Integer, nullable=False),
    Column("task_id", String(32), nullable=True, index=True),
    Column("ref", String(64), nullable=True, unique=True),
    Column("reason", String(200), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_quota_ledger_user_created", "user_id", "created_at"),
)

pipelines = Table(
    "pipelines",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("description", String(500), nullable=False, server_default=text("''")),
    Column("cost", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("steps", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), nullable=False),
    Column("pipeline_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("cost", Integer, nullable=False),
    Column("input", JSON, nullable=False),
    Column("output", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    # The pipeline's steps as they were when the task was created: edits never reach it.
    Column("steps", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=True),
    Index("ix_tasks_user_created", "user_id", "created_at", "id"),
    Index("ix_tasks_status_updated", "status", "updated_at"),
)

task_steps = Table(
    "task_steps",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("task_id", String(32), nullable=False),
    Column("position", Integer, nullable=False),
    # -1 is the step itself; 0..N-1 are the branches of a fork.
    Column("branch", Integer, nullable=False),
    Column("step_id", String(64), nullable=False),
    Column("type", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("output", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("dispatched_at", UtcDateTime(), nullable=True),
    Column("lease_until", UtcDateTime(), nullable=True),
    Column("heartbeat_at", UtcDateTime(), nullable=True),
    Column("started_at", UtcDateTime(), nullable=True),
    Column("finished_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("task_id", "position", "branch", name="uq_task_steps_task_position"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_id", String(32), primary_key=True),
    Column("scope", String(32), primary_key=True),
    # compared byte for byte: `AbC` and `abc` are different keys
    Column(
        "key",
        String(255).with_variant(mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb"),
        primary_key=True,
    ),
    Column("request_hash", String(64), nullable=False),
    Column("response", JSON, nullable=False),
    Column("resource_id", String(32), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Index("ix_idempotency_keys_expires", "expires_at"),
)

# Secrets stored sealed (app.crypto.envelopes), one data key per row, context = name: what a
# `secret:NAME` setting reads (app.crypto.resolution) and what pipelines send upstream.
secrets = Table(
    "secrets",
    metadata,
    Column(
        "name",
        String(64).with_variant(mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb"),
        primary_key=True,
    ),
    Column("envelope", Text, nullable=False),
    Column("key_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# What memberships are sold as (PUT /admin/plans/{id}, GET /plans).
plans = Table(
    "plans",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("price_fen", Integer, nullable=False),
    Column("duration_days", Integer, nullable=False),
    Column("quota", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# One purchase. The plan's price, duration, quota and name are copied at purchase time, so
# an edit of the plan never changes what an order costs or grants. `checked_at` is the last
# time the provider was asked about it (at most once per 10 s, whoever asks).
orders = Table(
    "orders",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), nullable=False),
    Column("plan_id", String(64), nullable=False),
    Column("plan_name", String(100), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("amount_fen", Integer, nullable=False),
    Column("duration_days", Integer, nullable=False),
    Column("quota", Integer, nullable=False),
    Column("status", String(8), nullable=False),
    Column("code", String(512), nullable=False),
    Column("provider_trade_id", String(64), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("paid_at", UtcDateTime(), nullable=True),
    Column("closed_at", UtcDateTime(), nullable=True),
    Column("checked_at", UtcDateTime(), nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_orders_user_created", "user_id", "created_at"),
    Index("ix_orders_status_created", "status", "created_at"),
)

# The uploads a task's input names (`uploads/{user}/{id}`), one row per task and key, written
# with the task: what cos-cleanup asks, by key, to tell a named upload from an orphan.
task_uploads = Table(
    "task_uploads",
    metadata,
    Column("task_id", String(32), nullable=False),
    Column(
        "key",
        String(255).with_variant(mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb"),
        nullable=False,
    ),
    PrimaryKeyConstraint("task_id", "key"),
    Index("ix_task_uploads_key", "key"),
)

# One run of a maintenance job (cos-cleanup, invite-refill; app.db.runs): written when it
# starts, its counts updated as each batch completes, closed `ok` or `failed` (with the error)
# when it ends. A row left `running` is a run that died; its counts are what it had done by
# its last batch. A run that ran out of its time says so (`stopped_early`), and where the
# next run goes on from (`resume_after`).
maintenance_runs = Table(
    "maintenance_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("job", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=True),
    Column("scanned", BigInteger, nullable=False, server_default=text("0")),
    Column("deleted", BigInteger, nullable=False, server_default=text("0")),
    Column("deleted_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("failed", BigInteger, nullable=False, server_default=text("0")),
    Column(
        "saved_cny_per_month",
        Numeric(18, 6, asdecimal=False),
        nullable=False,
        server_default=text("0"),
    ),
    Column("error", String(500), nullable=True),
    Column("stopped_early", Boolean, nullable=False, server_default=false()),
    # The last key a run went through, for the next to list after (cos-cleanup); NULL: from
    # the start. A run that fails or dies leaves the one it started from.
    Column("resume_after", String(1024), nullable=True),
    # The job's name while the run is live, NULL once it ended: unique, so two runs of one
    # job never go at once.
    Column("live_job", String(64), nullable=True, unique=True),
    Index("ix_maintenance_runs_job_started", "job", "started_at"),
)

# One admin action (app.audit): who (`actor_id`), what (`action`), to whom or what (`target`:
# a user id, a secret's name, a pipeline, plan or job), when, what changed (`changes`, small
# JSON, never a secret's value) and the request it came in. Written in the transaction of the
# change it records; never updated.
admin_actions = Table(
    "admin_actions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor_id", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(64), nullable=False),
    Column("changes", JSON, nullable=False),
    Column("request_id", String(64), nullable=False),
    Index("ix_admin_actions_target_at", "target", "at"),
    Index("ix_admin_actions_actor_at", "actor_id", "at"),
)
