"""Distillation: losses (one registry), feature taps, the trainer and the distill stage.

The stage functions load lazily, so `edgekd --help` (which lists the methods from catalog.py) never imports
torch.
"""

from __future__ import annotations

__all__ = ["run_distill", "load_student"]


def __getattr__(name: str):
    if name in __all__:
        from edgekd.distill import stage

        return getattr(stage, name)
    raise AttributeError(f"module 'edgekd.distill' has no attribute '{name}'")
