-- Jobs on a Slurm host (core.hosts.slurm) carry their Slurm job id (`12`, or `12_3` for an array
-- task), recorded at submission and again from the job directory's slurm_id file by the monitor
-- (the file is the truth: a crash between sbatch and this write loses nothing).
ALTER TABLE jobs ADD COLUMN slurm_id TEXT;
