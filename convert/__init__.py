"""Rewrite forged or plain HF checkpoints into MLX model folders, tensor by tensor."""

from convert.to_mlx import convert_to_mlx, default_output

__all__ = ["convert_to_mlx", "default_output", "verify_conversion"]


def verify_conversion(src, out, prompts=None) -> dict:
    """Compare source (torch) and converted (MLX) logits; see convert.verify."""
    from convert.verify import verify_conversion as _verify

    return _verify(src, out, prompts)
