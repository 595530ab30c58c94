-- Tasks and coding-agent attempts (seed 004's tasks, workspaces, sessions, turns, repo states,
-- merges, tags and scratch; seed 003's solves and runs as sweeps; seed 002's cost entries and
-- agents_hash). Every setup script, agent session and test run is a row in jobs whose
-- origin_kind is 'attempt' and origin_id the attempt's id; the tasks package reacts to their
-- ends through its job kinds (core/tasks/kinds.py).

CREATE TABLE tasks (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id        INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    title             TEXT    NOT NULL,
    description       TEXT,
    status            TEXT    NOT NULL DEFAULT 'todo'
                      CHECK (status IN ('todo', 'inprogress', 'inreview', 'done', 'cancelled')),
    parent_attempt_id INTEGER REFERENCES attempts(id) ON DELETE SET NULL,  -- a subtask's spawner
    position          REAL    NOT NULL DEFAULT 0,   -- order within its kanban column
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL
);
CREATE INDEX tasks_status ON tasks(status, position);

CREATE TABLE sweeps (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id             INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    matrix              TEXT    NOT NULL,           -- JSON {"agents": [...], "params": {name: [values]}}
    limits              TEXT    NOT NULL DEFAULT '{}',  -- JSON: budgets per attempt
    max_parallel        INTEGER,
    time_budget_s       REAL,
    state               TEXT    NOT NULL DEFAULT 'running'
                        CHECK (state IN ('running', 'done', 'stopped')),
    champion_attempt_id INTEGER REFERENCES attempts(id) ON DELETE SET NULL,
    error_message       TEXT,                       -- why it stopped, why it has no champion
    started_at          TEXT    NOT NULL,
    completed_at        TEXT,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL
);

-- An attempt at a task (seed 004's workspace): a git worktree on a branch of its own, where
-- agent sessions run. It is also a sweep's run (sweep_id, params) and carries the run's results:
-- tests_passed, files and lines changed, agent_seconds (latency); tokens and dollars are the
-- sum of its cost_entries.
CREATE TABLE attempts (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id            INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    name               TEXT,
    agent              TEXT    NOT NULL,
    host               TEXT    NOT NULL DEFAULT 'local',
    worktree_path      TEXT    NOT NULL,            -- the local worktree (merges and diffs are made here)
    remote_dir         TEXT,                        -- on an SSH host: the clone its agent works in
    agent_working_dir  TEXT    NOT NULL DEFAULT '', -- the project's folder in the repository ('' = its top)
    branch             TEXT    NOT NULL,
    target_branch      TEXT    NOT NULL,
    base_commit        TEXT    NOT NULL,            -- the target branch's head when it began
    branch_head        TEXT,                        -- the branch's head as evopilot last left it
    state              TEXT    NOT NULL DEFAULT 'starting'
                       CHECK (state IN ('starting', 'running', 'testing', 'ready', 'stopped',
                                        'failed', 'merged')),
    archived           INTEGER NOT NULL DEFAULT 0,
    pinned             INTEGER NOT NULL DEFAULT 0,
    params             TEXT    NOT NULL DEFAULT '{}',  -- JSON: a sweep cell's parameters
    sweep_id           INTEGER REFERENCES sweeps(id) ON DELETE SET NULL,
    agents_hash        TEXT,                        -- sha256 of AGENTS.md (or CLAUDE.md) it ran with
    setup_job_id       INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
    setup_completed_at TEXT,
    test_job_id        INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
    tests_passed       INTEGER,                     -- NULL: not tested (yet)
    files_changed      INTEGER,
    lines_added        INTEGER,
    lines_removed      INTEGER,
    agent_seconds      REAL    NOT NULL DEFAULT 0,  -- time its agent sessions ran
    max_dollars        REAL,                        -- budgets; NULL: no cap
    max_requests       INTEGER,
    max_minutes        REAL,
    stop_reason        TEXT,                        -- a budget cap reached, a sweep's time budget
    error_message      TEXT,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL
);
CREATE INDEX attempts_task ON attempts(task_id);
CREATE INDEX attempts_sweep ON attempts(sweep_id);
CREATE INDEX attempts_state ON attempts(state);

-- One agent process (a job of kind 'agent') in an attempt's worktree; a follow-up that cannot be
-- typed into a live session starts a new one. head_before/head_after: the worktree's HEAD
-- around it (seed 004's execution_process_repo_states).
CREATE TABLE agent_sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    attempt_id  INTEGER NOT NULL REFERENCES attempts(id) ON DELETE CASCADE,
    job_id      INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
    agent       TEXT    NOT NULL,
    tty         INTEGER NOT NULL DEFAULT 0,
    command     TEXT    NOT NULL,
    head_before TEXT,
    head_after  TEXT,
    created_at  TEXT    NOT NULL,
    ended_at    TEXT
);
CREATE INDEX agent_sessions_attempt ON agent_sessions(attempt_id);
CREATE INDEX agent_sessions_job ON agent_sessions(job_id);

CREATE TABLE agent_turns (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES agent_sessions(id) ON DELETE CASCADE,
    prompt     TEXT    NOT NULL,
    summary    TEXT,                                -- the agent's last words, when it ended
    seen       INTEGER NOT NULL DEFAULT 0,
    created_at TEXT    NOT NULL
);
CREATE INDEX agent_turns_session ON agent_turns(session_id);

CREATE TABLE merges (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    attempt_id    INTEGER NOT NULL REFERENCES attempts(id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL CHECK (kind IN ('direct', 'pr')),
    target_branch TEXT    NOT NULL,
    merge_commit  TEXT,
    pr_number     INTEGER,
    pr_url        TEXT,
    pr_state      TEXT CHECK (pr_state IS NULL OR pr_state IN ('open', 'merged', 'closed')),
    pr_merged_at  TEXT,
    created_at    TEXT    NOT NULL
);
CREATE INDEX merges_attempt ON merges(attempt_id);

-- Reusable prompt snippets (seed 004's tags).
CREATE TABLE templates (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    content    TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
);

-- Drafts, notes and UI preferences, addressed by (kind, key).
CREATE TABLE scratch (
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL,
    payload    TEXT NOT NULL,                       -- JSON
    updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);

-- What an agent session reported it used, per model: the one ledger of seed 002's cost entries
-- (0006) gets the attempt and the session a cost belongs to.
ALTER TABLE cost_entries ADD COLUMN attempt_id INTEGER REFERENCES attempts(id) ON DELETE CASCADE;
ALTER TABLE cost_entries ADD COLUMN session_id INTEGER REFERENCES agent_sessions(id) ON DELETE SET NULL;
CREATE INDEX cost_entries_attempt ON cost_entries(attempt_id);
