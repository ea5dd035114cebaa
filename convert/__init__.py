"""Rewrite forged or plain HF checkpoints into MLX model folders or GGUF files, tensor by tensor.

Imports are lazy: the GGUF path needs neither MLX nor torch, so ``import convert.to_gguf``
works on a machine that has only numpy and the gguf package.
"""

__all__ = ["convert_to_mlx", "default_output", "verify_conversion"]


def convert_to_mlx(*args, **kwargs):
    """See convert.to_mlx.convert_to_mlx."""
    from convert.to_mlx import convert_to_mlx as _convert

    return _convert(*args, **kwargs)


def default_output(*args, **kwargs):
    """See convert.to_mlx.default_output."""
    from convert.to_mlx import default_output as _default

    return _default(*args, **kwargs)


def verify_conversion(src, out, prompts=None) -> dict:
    """Compare source (torch) and converted (MLX) logits; see convert.verify."""
    from convert.verify import verify_conversion as _verify

    return _verify(src, out, prompts)
