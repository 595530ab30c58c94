"""Tasks and coding-agent attempts (seeds 004, 003, 002): a kanban of tasks, each attempt a git
worktree on its own branch where an agent runs as a tmux job, sweeps that pick a champion,
budgets. The API the CLI and the Tasks tab use is ``engine.tasks`` (service.py's docstring);
kinds.py holds the job kinds and their end handlers, worktrees.py the git, agents.py and
sweeps.py the pure parts."""
