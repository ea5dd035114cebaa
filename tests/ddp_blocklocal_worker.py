"""Run by tests/test_recovery.py under torchrun: block-local training split over ranks, dump the student."""

import copy
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from tiny import tiny_model  # noqa: E402

from forge_cuda.distributed import state  # noqa: E402
from forge_cuda.recovery.blocklocal import BlockLocalConfig, train_blocks  # noqa: E402

out = Path(sys.argv[1])
rank = state(cpu=True).process_index
teacher = tiny_model("llama")
student = copy.deepcopy(teacher)
with torch.no_grad():
    for p in student.parameters():
        p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.05)
windows = (torch.arange(16)[:, None] * 7 + torch.arange(12)[None, :]) % 96
stats = train_blocks(student, teacher, windows, BlockLocalConfig(steps=4, batch_size=4, lr=3e-3),
                     out / f"states{rank}", progress=False)
save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
(out / f"rank{rank}.txt").write_text(",".join(str(b["block"]) for b in stats["blocks"]))
