"""The torch side: load/save forged checkpoints, measure heads, prune, train.

Runs on CUDA and on CPU; never imports mlx.
"""
