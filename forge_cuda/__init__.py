"""The torch side: load/save forged checkpoints, measure heads, prune, train.

Runs on CUDA and on CPU; never imports mlx.
"""

from forge_cuda.nf4 import quiet_bitsandbytes as _quiet_bitsandbytes

_quiet_bitsandbytes()  # before anything imports peft (which imports bitsandbytes): see nf4.py
