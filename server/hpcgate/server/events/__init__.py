"""The watch hub: one shared Slurm poller per system, job events with revisions."""
