-- Code evolution (seed 000's experiments, commits, metrics, evolution jobs and MAP-Elites
-- states; seed 002's cost entries). Every candidate is a git commit of the experiment's project;
-- every evaluation is a row in jobs (kind 'evaluation', origin 'iteration').

CREATE TABLE experiments (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT    NOT NULL,
    project_id         INTEGER NOT NULL REFERENCES projects(id),
    config_hash        TEXT    NOT NULL UNIQUE,
    config_snapshot    TEXT    NOT NULL,        -- canonical JSON of the experiment file
    source_path        TEXT,
    state              TEXT    NOT NULL DEFAULT 'created'
                       CHECK (state IN ('created', 'running', 'stopping', 'stopped', 'finished', 'failed')),
    stop_reason        TEXT,
    iterations_planned INTEGER NOT NULL,
    base_commit        TEXT    NOT NULL,        -- the seed program
    active_seconds     REAL    NOT NULL DEFAULT 0,  -- time spent running, across resumes
    owner              TEXT,                    -- host:pid of the process running its loop
    heartbeat_at       REAL,                    -- unix time the owner last said it is alive
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL
);

CREATE TABLE commits (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id      INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    commit_hash        TEXT    NOT NULL,
    parent_hash        TEXT,
    tree_hash          TEXT    NOT NULL,
    island             INTEGER,
    iteration          INTEGER,                 -- evolution_iterations.number; NULL: the seed
    author             TEXT,
    message            TEXT,
    evaluation_summary TEXT,                    -- 'placed', 'filtered at stage 1', an error
    objective          REAL,
    tags               TEXT    NOT NULL DEFAULT '[]',
    extra_context      TEXT    NOT NULL DEFAULT '{}',   -- mutator, cost, descriptor
    created_at         TEXT    NOT NULL,
    UNIQUE (experiment_id, commit_hash)
);
CREATE INDEX commits_tree ON commits(experiment_id, tree_hash);

CREATE TABLE commit_metrics (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    commit_id        INTEGER NOT NULL REFERENCES commits(id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    value            REAL    NOT NULL,
    unit             TEXT,
    higher_is_better INTEGER,
    details          TEXT,
    UNIQUE (commit_id, name)
);

CREATE TABLE evolution_iterations (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id      INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    number             INTEGER NOT NULL,        -- 0, 1, 2 ... in the order they are planned
    status             TEXT    NOT NULL CHECK (status IN
                       ('planned', 'mutated', 'evaluating', 'evaluated', 'placed', 'skipped', 'failed')),
    base_commit_hash   TEXT    NOT NULL,        -- the parent
    island             INTEGER NOT NULL,
    inspiration_hashes TEXT    NOT NULL DEFAULT '[]',
    payload            TEXT    NOT NULL DEFAULT '{}',   -- prompt, mutator, seed
    plan_summary       TEXT,                    -- the mutator's summary of its change
    answer             TEXT,                    -- the mutator's raw answer, kept once paid for
    candidate_hash     TEXT,                    -- the child commit
    stage              INTEGER NOT NULL DEFAULT 0,  -- cascade stage being (or last) evaluated
    job_id             INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
    priority           INTEGER NOT NULL DEFAULT 0,
    scheduled_at       TEXT,
    started_at         TEXT,
    processed_at       TEXT,
    last_error         TEXT,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,
    UNIQUE (experiment_id, number)
);
CREATE INDEX evolution_iterations_status ON evolution_iterations(experiment_id, status);

CREATE TABLE map_elites_states (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    island_id     INTEGER NOT NULL,
    snapshot      TEXT    NOT NULL,             -- bounds, PCA state and history, entries
    updated_at    TEXT    NOT NULL,
    PRIMARY KEY (experiment_id, island_id)
);

-- Coverage, QD score and best of each island after each placement: the curves of the run.
CREATE TABLE archive_history (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    island_id     INTEGER NOT NULL,
    placed        INTEGER NOT NULL,             -- candidates placed so far in the experiment
    coverage      REAL    NOT NULL,
    qd_score      REAL    NOT NULL,
    best          REAL,
    PRIMARY KEY (experiment_id, island_id, placed)
);

CREATE TABLE cost_entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id INTEGER REFERENCES experiments(id) ON DELETE CASCADE,
    iteration_id  INTEGER REFERENCES evolution_iterations(id) ON DELETE CASCADE,
    job_id        INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
    provider      TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    tokens_in     INTEGER NOT NULL DEFAULT 0,
    tokens_out    INTEGER NOT NULL DEFAULT 0,
    cost_usd      REAL    NOT NULL DEFAULT 0,
    requests      INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT    NOT NULL
);
CREATE INDEX cost_entries_experiment ON cost_entries(experiment_id);
