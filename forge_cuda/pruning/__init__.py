"""The pruning wing: which units (query heads, KV groups, MLP channels) to remove, and removing them.

options (what to prune, validated when built) -> importance (scores, read through hooks)
-> space (legal moves per layer) + search (greedy to a size target; exact head count)
-> refit -> defrag (and mitosis); step runs that for `sentinel prune` (command) and a forge cycle;
preflight checks a request against the model's shapes before any weight is read.
"""
