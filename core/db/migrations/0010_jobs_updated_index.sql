-- The app reads the jobs another process changed (core/jobs/publish.py, ExternalChanges) by
-- their updated_at: an index, so that it never scans the whole table.
CREATE INDEX jobs_updated ON jobs(updated_at);

-- The job loop asks every tick for ended jobs whose end is not handled yet (core/db/jobs.py,
-- mark_ends_handled, ended_unhandled): a partial index of those few rows, instead of a scan of
-- every ended job (~270 ms a tick with 100,000 jobs, which held up the app's other reads). On
-- status, so that the planner prefers it to jobs_status_id for `status IN (...)`.
CREATE INDEX jobs_end_pending ON jobs(status) WHERE end_handled = 0;
