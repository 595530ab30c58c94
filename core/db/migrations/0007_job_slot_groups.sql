-- A cap on jobs running at once across hosts, shared by a group of jobs (an experiment's
-- evaluations: `parallel`). Its jobs may be queued ahead of a free place, so that the tick that
-- sees one end starts the next at once. NULL: no group.
ALTER TABLE jobs ADD COLUMN slot_group TEXT;
ALTER TABLE jobs ADD COLUMN slot_limit INTEGER;
