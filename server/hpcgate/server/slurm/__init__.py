"""The scheduler port: one async interface, several adapters (command line, pyslurm)."""

from hpcgate.server.slurm.adapter import (
    ControllerPing,
    NodeInfo,
    PartitionInfo,
    SlurmAdapter,
    SlurmError,
    SlurmUnavailable,
)

__all__ = [
    "ControllerPing",
    "NodeInfo",
    "PartitionInfo",
    "SlurmAdapter",
    "SlurmError",
    "SlurmUnavailable",
]
