"""Rewrite forged or plain HF checkpoints into MLX model folders, tensor by tensor."""
