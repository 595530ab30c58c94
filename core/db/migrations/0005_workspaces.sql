-- Trees of commits that jobs run on (core/workspace.py): one per project, host and commit.
-- state: preparing (being built), ready, removing (being deleted; a new tree of the same commit
-- may be built meanwhile, in another directory). users counts the runs placing jobs in it right
-- now; lease_until (unix time) ends that claim if its process died. A tree is removed once it has
-- no users and no unfinished job has it as its workdir (an SSH host keeps its newest trees as
-- the basis of the next ones).
CREATE TABLE workspaces (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id   INTEGER REFERENCES projects(id) ON DELETE SET NULL,
    host         TEXT    NOT NULL,
    commit_sha   TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('preparing', 'ready', 'removing')),
    users        INTEGER NOT NULL DEFAULT 0,
    lease_until  REAL,
    created_at   TEXT    NOT NULL,
    last_used_at TEXT    NOT NULL
);
CREATE UNIQUE INDEX workspaces_current ON workspaces(project_id, host, commit_sha)
    WHERE state != 'removing';
-- "does an unfinished job run in this directory": the sweep asks it of every tree, every tick
CREATE INDEX jobs_unfinished_workdir ON jobs(workdir, host)
    WHERE status IN ('pending', 'queued', 'running');
