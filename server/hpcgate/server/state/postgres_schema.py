"""The PostgreSQL schema (cluster mode), migrated like SQLite's (state/store.py): entry i
takes the schema from version i to i+1, recorded in `schema_version`; never edit a
released entry. The tables are SQLite's with PostgreSQL types (BIGINT for microsecond
and nanosecond times, DOUBLE PRECISION for REAL), plus the job event log the replicas
share (events/journal.py).
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE outages (
        id TEXT PRIMARY KEY,
        system TEXT NOT NULL,
        start_time DOUBLE PRECISION NOT NULL,
        end_time DOUBLE PRECISION,
        description TEXT NOT NULL,
        create_time DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX outages_system ON outages(system, start_time);
    CREATE TABLE notes (
        id TEXT PRIMARY KEY,
        system TEXT NOT NULL,
        text TEXT NOT NULL,
        author TEXT NOT NULL,
        create_time DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX notes_system ON notes(system, create_time);
    CREATE TABLE clients (
        id TEXT PRIMARY KEY,
        "user" TEXT NOT NULL,
        public_key TEXT NOT NULL,
        scopes TEXT NOT NULL,
        cidrs TEXT NOT NULL,
        description TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    CREATE INDEX clients_user ON clients("user");
    CREATE TABLE used_assertions (
        jti TEXT NOT NULL,
        client_id TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (client_id, jti)
    );
    CREATE TABLE job_requests (
        "user" TEXT NOT NULL,
        system TEXT NOT NULL,
        request_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        job_id TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY ("user", system, request_id)
    );
    CREATE TABLE upload_requests (
        "user" TEXT NOT NULL,
        system TEXT NOT NULL,
        request_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        path TEXT NOT NULL,
        size BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY ("user", system, request_id)
    );
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        "user" TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        system TEXT NOT NULL,
        description TEXT NOT NULL,
        labels TEXT NOT NULL,
        request TEXT NOT NULL,
        request_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        bytes_done BIGINT NOT NULL DEFAULT 0,
        bytes_total BIGINT,
        files_done BIGINT NOT NULL DEFAULT 0,
        files_total BIGINT,
        message TEXT NOT NULL DEFAULT '',
        bytes_per_second DOUBLE PRECISION NOT NULL DEFAULT 0,
        result TEXT,
        error_code INTEGER,
        error_message TEXT,
        error_path TEXT,
        checkpoint TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        revision BIGINT NOT NULL DEFAULT 1,
        create_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL,
        start_time BIGINT,
        end_time BIGINT,
        lease_owner TEXT NOT NULL DEFAULT '',
        lease_token BIGINT NOT NULL DEFAULT 0,
        lease_until BIGINT
    );
    CREATE INDEX tasks_user ON tasks("user", create_time);
    CREATE UNIQUE INDEX tasks_request_id ON tasks("user", request_id) WHERE request_id != '';
    CREATE INDEX tasks_unfinished ON tasks(state) WHERE state IN ('PENDING', 'RUNNING');
    CREATE INDEX tasks_ended ON tasks(end_time) WHERE end_time IS NOT NULL;
    CREATE SEQUENCE task_lease_tokens;
    CREATE TABLE finished_jobs (
        system TEXT NOT NULL,
        job_id TEXT NOT NULL,
        stored BIGINT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (system, job_id)
    );
    CREATE INDEX finished_jobs_stored ON finished_jobs(system, stored);
    CREATE TABLE reservation_requests (
        id TEXT PRIMARY KEY,
        system TEXT NOT NULL,
        owner TEXT NOT NULL,
        project TEXT NOT NULL,
        node_count INTEGER NOT NULL,
        partition TEXT NOT NULL,
        start DOUBLE PRECISION,
        duration DOUBLE PRECISION NOT NULL,
        users TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        slurm_name TEXT NOT NULL,
        nodes TEXT NOT NULL,
        granted_start DOUBLE PRECISION,
        created DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX reservation_requests_owner ON reservation_requests(owner, created);
    -- The job event log every replica follows (events/journal.py). job_streams holds
    -- each system's last revision and the poller's last poll; its row lock serialises
    -- writers, so revisions have no gaps. job_states holds each live job's current
    -- record: where a replica starts from.
    CREATE TABLE job_streams (
        system TEXT PRIMARY KEY,
        revision BIGINT NOT NULL,
        polled_at DOUBLE PRECISION,
        reachable BOOLEAN NOT NULL DEFAULT true,
        reason TEXT NOT NULL DEFAULT '',
        complete_since DOUBLE PRECISION
    );
    CREATE TABLE job_events (
        system TEXT NOT NULL,
        revision BIGINT NOT NULL,
        kind TEXT NOT NULL,
        previous_state TEXT NOT NULL,
        job_id TEXT NOT NULL,
        record TEXT NOT NULL,
        time DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (system, revision)
    );
    CREATE TABLE job_states (
        system TEXT NOT NULL,
        job_id TEXT NOT NULL,
        revision BIGINT NOT NULL,
        time DOUBLE PRECISION NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (system, job_id)
    );
    """,
    # Resumable uploads held after an interrupted stream (SQLite's, state/store.py).
    """
    CREATE TABLE upload_partials (
        "user" TEXT NOT NULL,
        system TEXT NOT NULL,
        request_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        path TEXT NOT NULL,
        temp TEXT NOT NULL,
        mode INTEGER NOT NULL,
        size BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY ("user", system, request_id)
    );
    CREATE INDEX upload_partials_expiry ON upload_partials(expires_at);
    """,
)
