"""``--keep-vision/--drop-vision`` for commands that load a checkpoint to prune it (prune, forge).

A decorator rather than a parameter threaded through every call: it sets the policy
(forge_cuda.wrappers.vision_policy) around the command, and the loader records it on
models read from a multimodal wrapper folder, so their saves keep or drop the vision tower.
"""

from __future__ import annotations

import functools

import click


def vision_option(command):
    """Add the flag to a click command callback (place it right above ``def``)."""

    @functools.wraps(command)
    def run(*args, keep_vision: bool = False, **kwargs):
        from forge_cuda.wrappers import vision_policy

        with vision_policy(keep=keep_vision):
            return command(*args, **kwargs)

    return click.option("--keep-vision/--drop-vision", default=False, show_default=True,
                        help="For a multimodal checkpoint (Qwen3_5ForConditionalGeneration): keep its vision tower "
                             "in the output folder, or write the pruned text model alone.")(run)
