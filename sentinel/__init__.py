"""Sentinel: domain-specialise, prune and ship LLMs to Apple Silicon.

The package itself is the contract every side shares (layout, weights, atomic writes,
errors, paths, verdict, config reading, validation): it imports no other project package,
nor torch or mlx. The CLI on top of everything lives in sentinel/cli/.
"""

__version__ = "0.1.0"
