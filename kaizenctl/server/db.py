"""SQLite storage: one connection, one lock, one transaction per request.

A single connection guarded by a lock makes every request's work serial and
atomic, which is what CONTRACT.md's concurrency rules need (no half-written
graph, no duplicate name, no two active deployments) without reasoning about
SQLite's own locking. ``:memory:`` works the same way because the connection is
shared.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS organizations (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
    full_name TEXT NOT NULL, organization_id TEXT NOT NULL, role TEXT NOT NULL,
    is_active INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, revoked INTEGER NOT NULL,
    expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT, system_prompt TEXT NOT NULL, provider TEXT NOT NULL,
    model TEXT NOT NULL, temperature REAL NOT NULL, max_tokens INTEGER,
    tools TEXT NOT NULL, is_active INTEGER NOT NULL, created_by_id TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    UNIQUE (organization_id, name));
CREATE TABLE IF NOT EXISTS agent_versions (
    id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, version INTEGER NOT NULL,
    snapshot TEXT NOT NULL, created_at TEXT NOT NULL, created_by_id TEXT NOT NULL,
    UNIQUE (agent_id, version));
CREATE TABLE IF NOT EXISTS pipelines (
    id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT, status TEXT NOT NULL, pattern TEXT NOT NULL, config TEXT NOT NULL,
    version INTEGER NOT NULL, created_by_id TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, UNIQUE (organization_id, name));
CREATE TABLE IF NOT EXISTS nodes (
    pipeline_id TEXT NOT NULL, id TEXT NOT NULL, node_type TEXT NOT NULL,
    agent_id TEXT, config TEXT NOT NULL, position_x REAL NOT NULL,
    position_y REAL NOT NULL, PRIMARY KEY (pipeline_id, id));
CREATE INDEX IF NOT EXISTS nodes_agent ON nodes (agent_id);
CREATE TABLE IF NOT EXISTS connections (
    id TEXT PRIMARY KEY, pipeline_id TEXT NOT NULL, source_node_id TEXT NOT NULL,
    target_node_id TEXT NOT NULL, source_handle TEXT, target_handle TEXT);
CREATE INDEX IF NOT EXISTS connections_pipeline ON connections (pipeline_id);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, pipeline_id TEXT NOT NULL,
    pipeline_version INTEGER NOT NULL, environment TEXT NOT NULL, status TEXT NOT NULL,
    gateway_id TEXT NOT NULL, config TEXT NOT NULL, created_by_id TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    t0 REAL NOT NULL, step_s REAL NOT NULL, fail_reason TEXT, replaced_id TEXT);
CREATE INDEX IF NOT EXISTS deployments_status ON deployments (status);
CREATE TABLE IF NOT EXISTS deployment_logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, deployment_id TEXT NOT NULL,
    timestamp TEXT NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gateways (
    organization_id TEXT NOT NULL, environment TEXT NOT NULL, gateway_id TEXT NOT NULL,
    PRIMARY KEY (organization_id, environment));
CREATE TABLE IF NOT EXISTS policies (
    id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT, effect TEXT NOT NULL, resource_type TEXT NOT NULL,
    actions TEXT NOT NULL, conditions TEXT NOT NULL, created_by_id TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, UNIQUE (organization_id, name));
"""


def _casefold(value: str | None) -> str | None:
    # SQLite's lower() folds ASCII only; search must be case-insensitive for all text.
    return value.casefold() if value is not None else None


class Database:
    """The server's state: a single SQLite connection used under a lock."""

    def __init__(self, path: str | None) -> None:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per request.
        self._conn = sqlite3.connect(
            path or ":memory:", check_same_thread=False, isolation_level=None
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.create_function("casefold", 1, _casefold, deterministic=True)
        self._lock = threading.Lock()
        if path:
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All of one request's reads and writes: committed together or not at all."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
