-- A job may wait for another (a benchmark for its host's environment setup job).
ALTER TABLE jobs ADD COLUMN depends_on INTEGER REFERENCES jobs(id) ON DELETE SET NULL;
CREATE INDEX jobs_depends_on ON jobs(depends_on);
