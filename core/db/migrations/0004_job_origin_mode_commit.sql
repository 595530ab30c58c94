-- Room for evolution and agents. A job's name is a neutral display name (a benchmark's file
-- name, "setup PROJECT", an evaluation's candidate); it records who owns it (origin_kind,
-- origin_id: an evolution iteration, a task attempt), how its wrapper runs it (batch: stdin
-- from /dev/null; tty: on the tmux pane's terminal), the commit whose files it runs on (NULL:
-- the project's working tree), and whether its kind's end handler has run (exactly once).
ALTER TABLE jobs RENAME COLUMN benchmark_name TO name;
ALTER TABLE jobs ADD COLUMN origin_kind TEXT;
ALTER TABLE jobs ADD COLUMN origin_id INTEGER;
ALTER TABLE jobs ADD COLUMN mode TEXT NOT NULL DEFAULT 'batch' CHECK (mode IN ('batch', 'tty'));
ALTER TABLE jobs ADD COLUMN commit_sha TEXT;
ALTER TABLE jobs ADD COLUMN end_handled INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET end_handled = 1 WHERE status IN ('succeeded', 'failed', 'cancelled', 'killed', 'lost');
CREATE INDEX jobs_origin ON jobs(origin_kind, origin_id);
-- finished jobs whose end handler is still to run: a handful at any time
CREATE INDEX jobs_end_unhandled ON jobs(id) WHERE end_handled = 0;
