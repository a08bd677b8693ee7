"""The metrics of this process, with their Prometheus names and labels. In the local cloud
every function shares the process, so `/metrics` shows the whole system; on SCF each
instance has its own and pushes it (see README, "Observability"). Recording costs no import
of prometheus_client (see `app.observability.instruments`). The dashboard
(infra/grafana/dashboard.json) may only name metrics exported here."""

from __future__ import annotations

from app.observability.instruments import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests handled, by route and status.",
    ["function", "method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from event to integration response.",
    ["function", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DB_POOL_USED = Gauge("db_pool_connections_used", "Connections checked out of the pool.")
DB_POOL_FREE = Gauge("db_pool_connections_free", "Open connections idle in the pool.")
DB_POOL_PENDING = Gauge("db_pool_acquire_pending", "Callers waiting for a connection.")
DB_POOL_PEAK = Gauge("db_pool_connections_peak", "Most connections ever checked out at once.")
DB_POOL_TIMEOUTS = Counter("db_pool_acquire_timeouts_total", "Acquires that gave up waiting.")
# `job_name`, not `job`: the Pushgateway sets its grouping key's `job` ("ai-platform") over a
# series' own, which made every job's runs one series (and a push of two jobs' runs a 400).
JOB_RUNS = Counter("job_runs_total", "Timer and admin job runs.", ["job_name", "outcome"])
JOB_ITEMS = Counter("job_items_total", "What jobs did, by kind.", ["job_name", "kind"])
QUOTA_SAGA = Counter(
    "quota_saga_total",
    "Quota saga calls by verb (reserve, confirm, cancel) and outcome.",
    ["verb", "outcome"],
)
QUOTA_GRANTS = Counter(
    "quota_grants_total", "Quota grants by kind and outcome.", ["kind", "outcome"]
)
PIPELINE_CALLS = Counter(
    "pipeline_upstream_calls_total",
    "Calls to upstream AI hosts by outcome (ok, retryable, failed).",
    ["outcome"],
)
QUEUE_PUBLISHES = Counter(
    "queue_publishes_total",
    "Messages published to a queue (SCF: Invoke calls, 100/s per account), by outcome.",
    ["queue", "outcome"],
)
TASKS_FINISHED = Counter("tasks_finished_total", "Tasks that ended, by status.", ["status"])

# Payments (app.payments): notifications, orders and the calls made to the providers.
PAYMENT_NOTIFICATIONS = Counter(
    "payments_notifications_total",
    "Payment notifications by provider (wechat, alipay) and outcome: accepted (an order paid),"
    " repeat (already applied), ignored (a non-paid state), rejected (bad signature, unknown"
    " order, mismatched amount or merchant, stale timestamp).",
    ["provider", "outcome"],
)
ORDERS = Counter(
    "orders_total",
    "Orders reaching a status (pending when created, paid, closed), by channel (wechat, alipay).",
    ["channel", "status"],
)
PAYMENT_PROVIDER_CALLS = Counter(
    "payments_provider_calls_total",
    "Calls to the payment providers by channel, call (create, query, close) and outcome"
    " (ok, error).",
    ["channel", "call", "outcome"],
)
# The cos-cleanup job (app.storage.cleanup): what it deleted.
COS_CLEANUP_DELETED_OBJECTS = Counter(
    "cos_cleanup_deleted_objects_total", "Orphan objects the COS cleanup deleted."
)
COS_CLEANUP_DELETED_BYTES = Counter(
    "cos_cleanup_deleted_bytes_total", "Bytes of the orphan objects the COS cleanup deleted."
)
