"""The deployment life cycle, evaluated lazily from timestamps.

Instead of a background worker, every request that touches deployments first
calls :func:`advance`, under the database lock, which moves each ``pending`` or
``deploying`` deployment through the states its clock says it has reached.
That is deterministic (a step of 0 answers ``pending`` on create and is settled
at the next read) and makes "at most one active per (pipeline, environment)"
a property of one serial function.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

ENVIRONMENT_ORDER = ("development", "staging", "production")
LIVE_STATUSES = ("pending", "deploying", "active")


def iso(at: float | None = None) -> str:
    """An ISO 8601 UTC timestamp with a ``Z`` suffix."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def log(conn: sqlite3.Connection, deployment_id: str, level: str, message: str, at: float) -> None:
    conn.execute(
        "INSERT INTO deployment_logs (deployment_id, timestamp, level, message) "
        "VALUES (?, ?, ?, ?)",
        (deployment_id, iso(at), level, message),
    )


def _set_status(conn: sqlite3.Connection, deployment_id: str, status: str, at: float) -> None:
    conn.execute(
        "UPDATE deployments SET status = ?, updated_at = ? WHERE id = ?",
        (status, iso(at), deployment_id),
    )


def advance(conn: sqlite3.Connection, now: float | None = None) -> None:
    """Bring every unsettled deployment up to date with the clock."""
    now = time.time() if now is None else now
    rows = conn.execute(
        "SELECT * FROM deployments WHERE status IN ('pending', 'deploying') ORDER BY t0, id"
    ).fetchall()
    for row in rows:
        deploying_at = row["t0"] + row["step_s"]
        done_at = deploying_at + row["step_s"]
        status = row["status"]
        if status == "pending" and now >= deploying_at:
            _set_status(conn, row["id"], "deploying", deploying_at)
            log(conn, row["id"], "info", f"Deploying to gateway {row['gateway_id']}", deploying_at)
            status = "deploying"
        if status != "deploying" or now < done_at:
            continue
        if row["fail_reason"]:
            # A failed deployment leaves the previously active one running.
            _set_status(conn, row["id"], "failed", done_at)
            log(conn, row["id"], "error", f"Deployment failed: {row['fail_reason']}", done_at)
            continue
        previous = conn.execute(
            "SELECT id FROM deployments WHERE pipeline_id = ? AND environment = ? "
            "AND status = 'active' AND id != ?",
            (row["pipeline_id"], row["environment"], row["id"]),
        ).fetchall()
        for old in previous:
            _set_status(conn, old["id"], "stopped", done_at)
            log(conn, old["id"], "info", f"Stopped: replaced by deployment {row['id']}", done_at)
        replaced = previous[0]["id"] if previous else None
        conn.execute(
            "UPDATE deployments SET status = 'active', updated_at = ?, replaced_id = ? "
            "WHERE id = ?",
            (iso(done_at), replaced, row["id"]),
        )
        log(conn, row["id"], "info", "Deployment active", done_at)
