"""Builds the configured Slurm adapter for a system."""

from __future__ import annotations

import importlib.util

from hpcgate.server.config import ConfigError, SystemConfig
from hpcgate.server.slurm.adapter import SlurmAdapter
from hpcgate.server.slurm.cli_adapter import CommandLineAdapter


def make_adapter(system: SystemConfig) -> SlurmAdapter:
    if system.slurm.adapter == "cli":
        return CommandLineAdapter(system.slurm)
    # adapter == "pyslurm"
    if importlib.util.find_spec("pyslurm") is None:
        raise ConfigError(
            f"systems.{system.id}.slurm.adapter = 'pyslurm' needs the pyslurm package: "
            "pip install 'hpcgate[pyslurm]' (it must match your Slurm release), or use 'cli'"
        )
    raise ConfigError(
        f"systems.{system.id}.slurm.adapter = 'pyslurm' is not available in this server "
        "version yet; use adapter = 'cli', which works with any Slurm >= 22.05"
    )
