"""The few multi-process facts the forge needs, via accelerate (no engine of our own).

Under ``accelerate launch`` / ``torchrun`` every process runs the forge; LoRA
training is data-parallel (DDP through accelerate), head scores are taken from
the main process so every rank prunes the same heads, and only the main process
writes files. In a plain single process all of this is a no-op.
"""

from __future__ import annotations

import os
from typing import Any

import torch


def launched() -> bool:
    """Whether a launcher started several processes (torchrun / accelerate set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def state(cpu: bool = False):
    from accelerate import PartialState

    return PartialState(cpu=cpu)


def local_device() -> torch.device:
    """This process's GPU (cuda:LOCAL_RANK under a launcher), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def is_main() -> bool:
    return not launched() or state().is_main_process


def wait() -> None:
    if launched():
        state().wait_for_everyone()


def from_main(obj: Any) -> Any:
    """The main process's ``obj`` on every process (picklable objects only)."""
    if not launched():
        return obj
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([obj], from_process=0)[0]
