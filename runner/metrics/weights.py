"""Finding and loading the FID Inception weights, without ever training or guessing them.

``find_inception(path)`` is where the weights are: ``--inception PATH`` when given, else the torch hub cache
(``torch.hub.get_dir()/checkpoints``), where pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``) and
torch-fidelity (``weights-inception-2015-12-05-6726825d.pth``) leave them; None when neither has them.
``inception_weights(path)`` is the same, but downloads torch-fidelity's file through
``torch.hub.load_state_dict_from_url`` into that cache when nothing was found; ``load_inception(file, device)``
builds ``FidInceptionV3`` from a file. An offline machine, a corrupt file or a file of another network is one
RunError line saying where to put the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import urllib.error
from pathlib import Path

import torch

# What torch.load raises for a file it cannot read: the same for a weights file as for a checkpoint.
from runner.checkpoint import _LOAD_ERRORS
from runner.errors import RunError, error_summary
from runner.metrics.inception import FidInceptionV3

PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"
FILES = (PYTORCH_FID_FILE, TORCH_FIDELITY_FILE)
URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{TORCH_FIDELITY_FILE}"


def hub_checkpoints() -> Path:
    """The folder torch.hub downloads weights into, where pytorch-fid and torch-fidelity keep theirs."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_inception(path: Path | None) -> Path | None:
    """The Inception weights file: ``path`` when given (RunError if it is not a file), else the first of
    ``FILES`` in the torch hub cache, else None."""
    if path is not None:
        if not path.is_file():
            raise RunError(f"--inception {path}: no such file")
        return path
    for name in FILES:
        found = hub_checkpoints() / name
        if found.is_file():
            return found
    return None


def missing_weights_hint() -> str:
    """Where to put the weights, for a message about their absence."""
    return (
        f"put {PYTORCH_FID_FILE} (pytorch-fid) or {TORCH_FIDELITY_FILE} (torch-fidelity) in {hub_checkpoints()}, "
        "or pass --inception PATH"
    )


def inception_weights(path: Path | None, download: bool = True) -> Path:
    """``find_inception(path)``, else (with ``download``) the file torch.hub downloads into its cache; RunError
    when there is none, offline included."""
    found = find_inception(path)
    if found is not None:
        return found
    if not download:
        raise RunError(f"no FID Inception weights: {missing_weights_hint()}")
    try:
        # torch.hub announces the download on stdout, where it would spoil `archspec eval --json`.
        with contextlib.redirect_stdout(io.StringIO()):
            torch.hub.load_state_dict_from_url(URL, map_location="cpu", progress=False, weights_only=True)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or error_summary(err)
        raise RunError(
            f"no FID Inception weights here and the download failed ({reason}): {missing_weights_hint()}"
        ) from None
    except _LOAD_ERRORS as err:
        raise RunError(f"{URL}: the downloaded weights do not load: {_first_sentence(err)}") from None
    return hub_checkpoints() / TORCH_FIDELITY_FILE


def load_inception(path: Path, device: torch.device) -> FidInceptionV3:
    """The FID Inception network from the weights file ``path``, on ``device`` in eval mode; RunError if the file
    is unreadable or holds another network's weights."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as err:
        raise RunError(
            f"{path}: not a readable weights file (truncated, corrupt, or not a torch.save file): "
            f"{_first_sentence(err)}"
        ) from None
    if not isinstance(state, dict):
        raise RunError(
            f"{path}: holds a {type(state).__name__}, not the state dict of the FID Inception network"
        )
    net = FidInceptionV3()
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, ValueError, KeyError) as err:
        raise RunError(f"{path}: not the FID Inception-v3 weights: {error_summary(err)}") from None
    if missing or unexpected:
        raise RunError(
            f"{path}: not the FID Inception-v3 weights ({FILES[0]} or {FILES[1]}): "
            + "; ".join(
                _keys(what, keys) for what, keys in (("lacks", missing), ("has unknown", unexpected)) if keys
            )
        )
    return net.to(device).eval().requires_grad_(False)


def weights_id(path: Path) -> str:
    """The first 12 hex digits of a weights file's sha256: what cached reference features are keyed by."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _keys(what: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:3])
    return f"{what} {len(keys)} {'key' if len(keys) == 1 else 'keys'} ({shown}{', ...' if len(keys) > 3 else ''})"


def _first_sentence(err: BaseException) -> str:
    # torch.load's refusals run to a paragraph of advice that does not apply to a weights file.
    return error_summary(err).split(". ", 1)[0].rstrip(".")
