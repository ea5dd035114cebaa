"""Sentinel: domain-specialise, prune and ship LLMs to Apple Silicon.

This thin package holds what every side shares: the per-layer head layout
contract, model resolution and the CLI. It imports neither torch nor mlx.
"""

__version__ = "0.1.0"
