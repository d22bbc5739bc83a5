"""The GPU's peak FLOP/s, the denominator of model FLOP utilisation: a table from NVIDIA's data sheets."""

from __future__ import annotations

import torch

# Dense peak FLOP/s from NVIDIA's data sheets, by a part of the device's name (first match wins; SXM parts
# unless named): bf16 tensor cores, TF32 tensor cores, plain float32. The T4 has no bf16 units: its fp16 peak.
PEAKS: tuple[tuple[str, float, float, float], ...] = (
    ("H100 PCIe", 756e12, 378e12, 51e12),
    ("H100", 989e12, 494e12, 67e12),
    ("H200", 989e12, 494e12, 67e12),
    ("A100", 312e12, 156e12, 19.5e12),
    ("L4", 121e12, 60e12, 30.3e12),
    ("T4", 65e12, 8.1e12, 8.1e12),
)


def peak_flops(device: torch.device, peak_tflops: float | None) -> tuple[dict[str, float | None], str]:
    """Peak FLOP/s by precision ("bf16", "fp32") on ``device``, and where the numbers come from."""
    if peak_tflops is not None:
        value = peak_tflops * 1e12
        return {"bf16": value, "fp32": value}, f"--peak-tflops {peak_tflops:g}"
    if device.type != "cuda":
        return {"bf16": None, "fp32": None}, "unknown for the CPU (give --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    # cuDNN runs float32 convolutions on TF32 tensor cores unless told not to (PyTorch's default).
    tf32 = bool(torch.backends.cudnn.allow_tf32)
    peaks, part = peaks_by_name(name, tf32)
    if part is None:
        return peaks, f"unknown for {name} (give --peak-tflops)"
    return peaks, f"{part} data sheet, dense; fp32 loops at the {'TF32' if tf32 else 'FP32'} peak"


def peaks_by_name(name: str, tf32: bool) -> tuple[dict[str, float | None], str | None]:
    """The PEAKS row whose part is in the GPU's ``name`` (and that part), or unknowns and None."""
    for part, bf16, tf32_peak, fp32 in PEAKS:
        if part in name:
            return {"bf16": bf16, "fp32": tf32_peak if tf32 else fp32}, part
    return {"bf16": None, "fp32": None}, None
