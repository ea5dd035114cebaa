"""Recovery after a prune: block-local distillation (blocklocal), the teacher's block states (blockcache),
the KD recipe's defaults (recipe) and the budget that sizes every phase (budget)."""
