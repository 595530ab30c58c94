-- Projects, benchmarks, jobs, metrics and job steps (seed 001's tables, widened).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE projects (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL UNIQUE,
    path           TEXT    NOT NULL,
    python_version TEXT    NOT NULL DEFAULT '3.12',
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);

CREATE TABLE benchmarks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,          -- file name, for display
    path       TEXT    NOT NULL,          -- path relative to the project root
    created_at TEXT    NOT NULL,
    UNIQUE (project_id, path)
);

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id       INTEGER REFERENCES projects(id) ON DELETE SET NULL,
    kind             TEXT    NOT NULL DEFAULT 'benchmark',   -- benchmark, setup, command
    benchmark_name   TEXT    NOT NULL,
    benchmark_path   TEXT,
    args             TEXT    NOT NULL DEFAULT '[]',          -- JSON list of arguments
    command          TEXT    NOT NULL,                       -- shell text, built with quote()
    workdir          TEXT    NOT NULL,
    host             TEXT    NOT NULL DEFAULT 'local',
    status           TEXT    NOT NULL CHECK (status IN
                       ('pending','queued','running','succeeded','failed','cancelled','killed','lost')),
    priority         INTEGER NOT NULL DEFAULT 0,
    seq              REAL    NOT NULL DEFAULT 0,             -- order within a priority
    timeout_s        REAL,
    tmux_session     TEXT,
    job_dir          TEXT,
    pid              INTEGER,
    pgid             INTEGER,
    exit_code        INTEGER,
    progress_current INTEGER NOT NULL DEFAULT 0,
    progress_total   INTEGER NOT NULL DEFAULT 0,
    results_path     TEXT,
    error_message    TEXT,
    log_path         TEXT,
    log_offset       INTEGER NOT NULL DEFAULT 0,
    requested        TEXT,                                   -- stop, kill, timeout: what the user or engine asked
    claimed_by       TEXT,
    retry_of         INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    updated_at       TEXT    NOT NULL
);
CREATE INDEX jobs_status_host ON jobs(status, host);
CREATE INDEX jobs_queue_order ON jobs(status, priority DESC, seq, id);
CREATE INDEX jobs_project ON jobs(project_id);

CREATE TABLE metrics (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id           INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    value            REAL    NOT NULL,
    unit             TEXT,
    higher_is_better INTEGER,
    created_at       TEXT    NOT NULL,
    UNIQUE (job_id, name)
);

CREATE TABLE job_steps (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    step_type   TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    details     TEXT,
    started_at  TEXT,
    finished_at TEXT,
    created_at  TEXT    NOT NULL
);
CREATE INDEX job_steps_job ON job_steps(job_id);

-- A tag unique to this database: it names tmux sessions and job directories on shared hosts.
INSERT INTO meta(key, value) VALUES ('instance', lower(hex(randomblob(3))));
INSERT INTO meta(key, value) VALUES ('queue_paused', '0');
