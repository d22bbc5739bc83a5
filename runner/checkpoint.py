"""Checkpoints: what a run needs to continue bit for bit, written atomically and read with ``weights_only``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (so ``torch.load(weights_only=True)``
can read it): both networks and optimisers, the EMA generator, the position in the data, every random number
generator, and the spec text with its sha256. Finding which checkpoint ``--resume`` means, and refusing one whose
architecture differs from the spec, also live here.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import random
import re
import struct
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from archspec.check import check_text, spec_findings
from archspec.layers import Layer
from archspec.spec import Spec, Train
from archspec.trace import trace_spec
from runner.data import natural_key
from runner.errors import RunError, error_summary

FORMAT = "archspec-checkpoint"
FORMAT_VERSION = 1
LAST = "last.pt"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
_REQUIRED = (
    "spec_text",
    "spec_sha256",
    "generator",
    "discriminator",
    "opt_g",
    "opt_d",
    "step",
    "epoch",
    "batch",
    "rng",
    "train",
)
# The type of every entry the trainer and ``archspec sample`` read (those not required may be absent).
_TYPES: dict[str, tuple[type, ...]] = {
    "spec_text": (str,),
    "spec_sha256": (str,),
    "spec_name": (str,),
    "generator": (dict,),
    "discriminator": (dict,),
    "ema": (dict, type(None)),
    "opt_g": (dict,),
    "opt_d": (dict,),
    "rng": (dict,),
    "rng_ranks": (list,),
    "train": (dict,),
    "value_range": (list, tuple, type(None)),
    "elapsed": (float, int),
    "limit": (int, type(None)),
    "world_size": (int,),
    "data": (dict,),
    "data_order": (dict,),
}
# What torch.load raises for a file that is not a (complete) checkpoint: a torn zip, a foreign pickle, a
# weights_only refusal, an empty file.
# IndexError, KeyError, TypeError, AttributeError and struct.error come from the weights-only unpickler
# reading a damaged pickle.
_LOAD_ERRORS = (
    RuntimeError,
    pickle.UnpicklingError,
    EOFError,
    OSError,
    ValueError,
    zipfile.BadZipFile,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    struct.error,
)


def step_name(step: int) -> str:
    """``step_000050.pt``: the file of the periodic checkpoint after ``step`` steps."""
    return f"step_{step:06d}.pt"


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (made by the trainer, with ``spec_text``) to ``path`` atomically: tmp file, fsync, rename.

    The format marker, version and the spec's sha256 are added here.
    """
    text = state["spec_text"]
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "spec_sha256": _sha256(text), **state}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU (the trainer copies tensors to its device); RunError naming the file if it
    is missing, truncated, corrupt, not ours, or of a newer format."""
    if not path.is_file():
        raise RunError(f"{path}: no such checkpoint file")
    try:
        state = _load(path, mmap=False)
    except _LOAD_ERRORS as err:
        raise RunError(
            f"{path}: not a readable checkpoint (truncated, corrupt, or not from archspec train): "
            f"{_first_sentence(err)}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RunError(f"{path}: not an archspec checkpoint (no '{FORMAT}' marker)")
    if not isinstance(state.get("version"), int) or state["version"] > FORMAT_VERSION:
        raise RunError(
            f"{path}: checkpoint format {state.get('version')!r} is newer than this archspec reads "
            f"({FORMAT_VERSION}); upgrade archspec"
        )
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise RunError(f"{path}: checkpoint lacks {', '.join(missing)} (corrupt?)")
    wrong = [k for k in ("step", "epoch", "batch") if not isinstance(state[k], int) or state[k] < 0]
    if wrong:
        raise RunError(f"{path}: checkpoint field {wrong[0]} is {state[wrong[0]]!r}, not a count (corrupt?)")
    for key, kinds in _TYPES.items():
        if key in state and not isinstance(state[key], kinds):
            raise RunError(
                f"{path}: checkpoint field {key} is {type(state[key]).__name__}, not "
                f"{' or '.join(k.__name__ for k in kinds)} (corrupt or hand-edited?)"
            )
    value_range = state.get("value_range")
    if value_range is not None and not (
        len(value_range) == 2 and all(isinstance(v, int | float) and math.isfinite(v) for v in value_range)
    ):
        raise RunError(f"{path}: checkpoint field value_range is {value_range!r}, not [low, high] (corrupt?)")
    if not isinstance(state["spec_text"], str) or _sha256(state["spec_text"]) != state["spec_sha256"]:
        raise RunError(f"{path}: the spec stored in the checkpoint does not match its sha256 (corrupt?)")
    return state


def checkpoint_spec(state: Mapping[str, Any], path: Path) -> Spec:
    """The spec a checkpoint was trained with: its stored text with its resolved train settings, checked again
    (the text alone may not check: command-line overrides can mend its train section). RunError if it fails."""
    result = check_text(state["spec_text"], name=f"{path}:spec")
    problems = [e.headline() for e in result.errors]
    if result.spec is not None:
        try:
            spec = result.spec.model_copy(update={"train": Train.model_validate(state["train"])})
        except ValidationError as err:
            raise RunError(
                f"{path}: the train settings stored in the checkpoint are not valid: {err.errors()[0]['msg']}"
            ) from None
        generator, discriminator = trace_spec(spec)
        findings = spec_findings(spec, generator, discriminator)
        if not findings and generator.complete and discriminator.complete:
            return spec
        problems = [f"{f.path}: {f.message}" for f in findings]
    raise RunError(
        f"{path}: the spec stored in the checkpoint does not check any more: "
        f"{problems[0] if problems else 'unknown error'}"
    )


def checkpoint_step(path: Path) -> int:
    """The step a checkpoint was written at, read without loading its tensors (memory-mapped)."""
    try:
        state = _load(path, mmap=True)
    except _LOAD_ERRORS:
        return -1
    step = state.get("step") if isinstance(state, dict) else None
    return step if isinstance(step, int) else -1


def best_checkpoint(run_dir: Path, warn: Callable[[str], None] | None = None) -> Path | None:
    """The intact checkpoint of a run with the highest step: last.pt or the latest step_*.pt (last.pt on a tie,
    being written after the periodic file of its step); None if it has none.

    A newer checkpoint that fails its CRC check or does not load is skipped, and ``warn`` is told so once."""
    skipped: list[str] = []
    found = None
    for _step, path in checkpoints_newest_first(run_dir):
        problem = damage(path)
        if problem is None:
            found = path
            break
        skipped.append(f"{path.name} ({problem})")
    if skipped and warn is not None:
        instead = f"using {found.name}" if found is not None else "no intact checkpoint is left"
        warn(f"{run_dir / 'checkpoints'}: skipped the damaged {', '.join(skipped)}; {instead}")
    return found


def checkpoints_newest_first(run_dir: Path) -> list[tuple[int, Path]]:
    """A run's checkpoints with their steps, the newest first (last.pt before a periodic file of its step);
    a last.pt whose step cannot be read comes last."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name)) and p.is_file()
    ]
    last = folder / LAST
    if last.is_file():
        found.append((checkpoint_step(last), last))
    return sorted(found, key=lambda c: (c[0], c[1].name == LAST), reverse=True)


def newest_step(run_dir: Path) -> int:
    """The highest step any checkpoint of the run was written at (-1 if it has none)."""
    found = checkpoints_newest_first(run_dir)
    return found[0][0] if found else -1


def damage(path: Path) -> str | None:
    """What is wrong with a checkpoint file, without loading its tensors: not a zip, a failed CRC, a step
    that cannot be read; None when it looks intact."""
    try:
        if not zipfile.is_zipfile(path):
            return "not a zip archive"
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:
        return _first_sentence(err)
    if bad is not None:
        return f"{bad} fails its CRC check"
    return None if checkpoint_step(path) >= 0 else "unreadable"


def find_resume(
    resume: str, out: str | Path, spec_name: str, warn: Callable[[str], None] | None = None
) -> Path:
    """The checkpoint ``--resume`` names: ``auto`` (the newest run of the spec with an intact checkpoint), a
    checkpoint file, a run folder or its checkpoints folder (their newest intact checkpoint: ``warn`` hears of
    any damaged one skipped)."""
    if resume == "auto":
        root = Path(out) / spec_name
        runs = (
            sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name), reverse=True)
            if root.is_dir()
            else []
        )
        for run in runs:
            found = best_checkpoint(run, warn)
            if found is not None:
                return found
        raise RunError(
            f"--resume auto: no run of {spec_name} with a checkpoint under {root}; start one without --resume"
        )
    path = Path(resume)
    if path.is_dir():
        run = path.parent if path.name == "checkpoints" else path
        found = best_checkpoint(run, warn)
        if found is None:
            raise RunError(f"--resume {resume}: no intact checkpoint in {run / 'checkpoints'}")
        return found
    if not path.exists():
        raise RunError(f"--resume {resume}: no such checkpoint file or run folder")
    return path


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint belongs to (``RUN/checkpoints/x.pt`` → ``RUN``), or None for a loose file."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


def architecture_differences(old: Spec, new: Spec) -> list[str]:
    """Every difference between two specs that changes the networks: latent, image, inputs, and each layer's type,
    fields and input shape, named by layer (``generator.layers[3]: conv_transpose2d out_channels 256 in the
    checkpoint, 128 in the spec``; a block's layer by its path). The train section is not compared."""
    found: list[str] = []
    if old.latent != new.latent:
        found.append(f"latent: {_latent(old)} in the checkpoint, {_latent(new)} in the spec")
    if old.image != new.image:
        found.append(f"image: {list(old.image)} in the checkpoint, {list(new.image)} in the spec")
    for role, ta, tb in zip(("generator", "discriminator"), trace_spec(old), trace_spec(new), strict=True):
        ga, gb = ta.graph, tb.graph
        assert ga is not None and gb is not None
        if ga.inputs != gb.inputs:
            found.append(
                f"{role}: inputs {_inputs(ga.inputs)} in the checkpoint, {_inputs(gb.inputs)} in the spec"
            )
        if len(ga.nodes) != len(gb.nodes):
            found.append(f"{role}: {len(ga.nodes)} layers in the checkpoint, {len(gb.nodes)} in the spec")
        inputs_a = {t.index: t.input for t in ta.layers}
        inputs_b = {t.index: t.input for t in tb.layers}
        for na, nb in zip(ga.nodes, gb.nodes, strict=False):
            where = na.path.rsplit(" (", 1)[0]
            la, lb = na.layer, nb.layer
            if la.type != lb.type:
                found.append(f"{where}: {la.type} in the checkpoint, {lb.type} in the spec")
                continue
            found += [f"{where}: {la.type} {d}" for d in _field_differences(la, lb)]
            in_a, in_b = inputs_a.get(na.index), inputs_b.get(nb.index)
            if in_a != in_b and not any(f.startswith(where) for f in found):
                found.append(
                    f"{where}: {la.type} input {_shape(in_a)} in the checkpoint, {_shape(in_b)} in the spec"
                )
    return found


def _inputs(inputs: Any) -> str:
    return ", ".join(f"{i.name} ({i.kind})" for i in inputs)


def capture_rng(latent: torch.Generator) -> dict[str, Any]:
    """Every random number generator a training step may draw from, as tensors and plain numbers."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy=True always gives the tuple form
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "latent": latent.get_state(),
        "python": {
            "version": py_version,
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }


def restore_rng(state: Mapping[str, Any], latent: torch.Generator) -> None:
    """Put back the generators ``capture_rng`` saved (CUDA ones only when this machine has the same count)."""
    torch.set_rng_state(state["torch"])
    cuda = list(state["cuda"])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    latent.set_state(state["latent"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))


def _field_differences(layer_a: Layer, layer_b: Layer) -> list[str]:
    a, b = layer_a.model_dump(), layer_b.model_dump()
    out = []
    for key in sorted(set(a) | set(b)):
        if key in ("type", "id", "from_", "repeat") or a.get(key) == b.get(key):
            continue
        # An input size written in one spec and inferred in the other is the same layer.
        if key in layer_a.traits.inferred and None in (a.get(key), b.get(key)):
            continue
        out.append(f"{key} {_value(a.get(key))} in the checkpoint, {_value(b.get(key))} in the spec")
    return out


def _value(v: Any) -> str:
    if isinstance(v, tuple | list) and len(set(v)) == 1:
        return _value(v[0])
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return "none" if v is None else str(v)


def _shape(shape: tuple[int, ...] | None) -> str:
    return "unknown" if shape is None else str(list(shape))


def _latent(spec: Spec) -> str:
    if spec.latent is None:
        return "none"
    return f"{spec.latent.size} ({spec.latent.distribution})"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _fsync_dir(folder: Path) -> None:
    # The rename itself must reach the disk too, or a power cut can bring back the old file.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the data itself is already synced
    finally:
        os.close(fd)


def _load(path: Path, mmap: bool) -> Any:
    if not zipfile.is_zipfile(path):
        # torch.save has written zip archives since 1.6; anything else would go to the legacy unpickler.
        raise zipfile.BadZipFile("not a zip archive, as torch.save writes")
    if not mmap:
        # torch does not check the archive's CRCs; a flipped bit would otherwise surface as any error at all.
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise zipfile.BadZipFile(f"{bad} fails its CRC check")
    with warnings.catch_warnings():
        # A foreign pickle makes torch warn about its protocol before refusing it; the refusal is what we report.
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _first_sentence(err: BaseException) -> str:
    # torch.load's refusals run to paragraphs of advice; their first sentence says what went wrong.
    text = " ".join(error_summary(err).split())
    text = text.split(". ")[0].rstrip(".")
    return text if len(text) <= 200 else text[:197] + "..."
