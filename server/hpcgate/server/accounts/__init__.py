"""Who the caller is on the facility: POSIX identity and groups, Slurm projects and usage."""
