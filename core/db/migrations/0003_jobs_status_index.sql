-- The Jobs tab pages through one status newest first: serve that from an index, not a sort.
CREATE INDEX jobs_status_id ON jobs(status, id);
