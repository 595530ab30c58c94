-- The app reads the jobs another process changed (core/jobs/publish.py, ExternalChanges) by
-- their updated_at: an index, so that it never scans the whole table.
CREATE INDEX jobs_updated ON jobs(updated_at);
