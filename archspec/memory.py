"""Whether a spec's training step fits a device: the compiler's memory estimate against the device's memory,
asked before anything is built, so a spec that passes ``check`` but could never train gets one line, not an
allocator's traceback minutes later. Imported by ``summary`` and the trainer only (it imports torch).
"""

from __future__ import annotations

import os

import torch


def device_memory(device: torch.device) -> int:
    """Bytes of memory ``device`` has: a GPU's total, or the machine's physical RAM for the CPU (and meta)."""
    if device.type == "cuda":
        _free, total = torch.cuda.mem_get_info(device)
        return int(total)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system: no bound known
        return 1 << 62


def too_big(estimate: int, batch_size: int, device: torch.device) -> str | None:
    """Why a training step of ``estimate`` bytes (the compiler's ``training memory`` at ``batch_size``) cannot
    run on ``device``, or None when it fits."""
    have = device_memory(device)
    if estimate <= have:
        return None
    where = "this machine's RAM" if device.type != "cuda" else f"{device}'s memory"
    return (
        f"the training step needs about {_gb(estimate)} at batch size {batch_size} (weights, gradients, Adam "
        f"state and activations), more than the {_gb(have)} of {where}; lower --batch-size or shrink the networks"
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB"
