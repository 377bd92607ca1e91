"""Builds the configured Slurm adapter for a system."""

from __future__ import annotations

import importlib.util

from hpcgate.server.config import ConfigError, SystemConfig
from hpcgate.server.metrics import Metrics
from hpcgate.server.slurm.adapter import SlurmAdapter
from hpcgate.server.slurm.cli_adapter import CommandLineAdapter
from hpcgate.server.slurm.pyslurm_adapter import PyslurmAdapter


def make_adapter(system: SystemConfig, metrics: Metrics | None = None) -> SlurmAdapter:
    """The adapter `system` names; `metrics` counts the Slurm tools it runs."""
    if system.slurm.adapter == "cli":
        return CommandLineAdapter(system.slurm, metrics)
    # adapter == "pyslurm"
    if importlib.util.find_spec("pyslurm") is None:
        raise ConfigError(
            f"systems.{system.id}.slurm.adapter = 'pyslurm' needs the pyslurm package: "
            "pip install 'hpcgate[pyslurm]' (it must match your Slurm release), or use 'cli'"
        )
    try:
        return PyslurmAdapter(system.slurm, metrics=metrics)
    except ConfigError as e:
        raise ConfigError(f"systems.{system.id}.slurm: {e}") from None
