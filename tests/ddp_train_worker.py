"""Run by tests/test_ddp.py under torchrun: train LoRA on this rank's shard, dump the merged weights."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from tiny import tiny_model  # noqa: E402

from forge_cuda.distributed import state  # noqa: E402
from forge_cuda.train import TrainConfig, train_model  # noqa: E402

out = Path(sys.argv[1])
rank = state(cpu=True).process_index
windows = (torch.arange(64)[:, None] * 7 + torch.arange(16)[None, :]) % 96  # 64 distinct windows
cfg = TrainConfig(steps=4, batch_size=4, lr=1e-2, warmup_steps=1, lora_rank=4, lora_dropout=0.0)
merged, stats = train_model(tiny_model("llama"), windows, cfg, progress=False)
save_file({k: v.contiguous() for k, v in merged.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
(out / f"rank{rank}.txt").write_text(str(stats["tokens"]))
