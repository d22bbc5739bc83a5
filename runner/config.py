"""The ``train:`` section plus command-line overrides, re-validated and re-checked: the config a run uses.

Every field of ``archspec.spec.Train`` becomes a flag (``batch_size`` → ``--batch-size``), its kind read from the
field's type, so a new field is overridable without touching this module. An override goes through the same
pydantic model and the same contract checks as the file, so ``--loss bce_logits`` on a sigmoid discriminator is
reported exactly like ``archspec check`` reports it. Imports no torch.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from archspec.check import CheckResult, check_file, check_source, check_text
from archspec.conditioning import Conditioning
from archspec.contract import data_range
from archspec.errors import SpecInvalid
from archspec.source import Source, SourceError, read_source
from archspec.spec import Spec, Train
from runner.errors import RunError

FlagKind = Literal["bool", "choice", "int", "float", "str", "pair"]

# One line of help per Train field; test_cli_train checks that the keys equal Train's fields.
FLAG_HELP: dict[str, str] = {
    "data": "HDF5 file of images (packed or the seed's layout), 'synthetic' faces (default) or 'random' noise",
    "epochs": "passes over the data (default: 1, or as many as --max-steps needs)",
    "max_steps": "stop after this many steps (one step = one generator update); 'none' for no limit",
    "batch_size": "images per step",
    "shuffle": "shuffle the images each epoch (reproducibly, from --seed)",
    "loss": "GAN objective",
    "lr": "Adam learning rate of both networks",
    "lr_g": "the generator's learning rate (default --lr)",
    "lr_d": "the discriminator's learning rate (default --lr)",
    "betas": "Adam betas, two numbers",
    "d_steps": "discriminator (critic) updates per generator update",
    "gp_weight": "gradient-penalty weight for wgan_gp",
    "aux_weight": "weight of a discriminator's class head (AC-GAN) cross-entropy in both losses (default 1)",
    "l1_weight": "weight of G's L1 to the target in a paired (image-to-image) run (default 100, pix2pix)",
    "ema": "keep an exponential moving average of the generator with this decay (e.g. 0.999); 'none' for off",
    "data_range": "pixel range: auto ([-1, 1] for a tanh generator, else [0, 1]), unit or symmetric",
    "seed": "seed of weights, latents and data order",
    "device": "auto (CUDA when present), cpu, cuda or cuda:N",
    "out": "root folder of runs: OUT/<spec name>/<run id>/",
    "log_every": "write a metrics row (and read losses back from the device) every N steps",
    "sample_every": "write a sample grid every N steps",
    "checkpoint_every": "write a checkpoint every N steps",
    "samples": "images in each sample grid",
    "precision": "fp32, or bf16 autocast",
    "channels_last": "use the channels-last memory format for convolutions",
    "fused_adam": "use the fused Adam implementation",
    "compile": "torch.compile both networks",
    "data_on_device": "copy the uint8 images to the device once: auto (when they fit), always or never",
    "sync_batchnorm": "synchronise batch-norm statistics across processes (multi-GPU runs only)",
    "eval_every": "measure SWD and NDB/K of the samples every N steps, keep the best as checkpoints/best.pt; 'none' for off",
    "eval_samples": "generated (and real) images per evaluation (default 1000)",
    "tensorboard": "also write TensorBoard events into RUN/tensorboard (pip install 'archspec[tensorboard]')",
}

_METAVARS = {"data": "PATH|synthetic|random", "device": "auto|cpu|cuda|cuda:N", "out": "DIR"}


@dataclass(frozen=True)
class Flag:
    """The command-line option of one Train field."""

    field: str
    kind: FlagKind
    optional: bool  # the field may be None: the flag also accepts "none"
    choices: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        return flag_name(self.field)

    @property
    def kind_name(self) -> str:
        """What the flag takes, for messages: ``an integer``, ``a number``."""
        return {"int": "an integer", "float": "a number", "pair": "a number"}.get(self.kind, "text") + (
            " or 'none'" if self.optional else ""
        )

    @property
    def metavar(self) -> str:
        """How the help shows the flag's value: ``N``, ``X|none``, ``PATH|synthetic|random``."""
        if self.field in _METAVARS:
            return _METAVARS[self.field]
        return {"int": "N", "float": "X"}.get(self.kind, "TEXT") + ("|none" if self.optional else "")

    @property
    def help(self) -> str:
        return FLAG_HELP.get(self.field, self.field.replace("_", " "))

    def parse(self, text: str) -> Any:
        """The value of ``text`` for this flag (argparse ``type=``); ValueError for a malformed number."""
        if self.optional and text.strip().lower() in ("none", "off"):
            return None
        if self.kind == "int":
            return int(text)
        if self.kind in ("float", "pair"):
            return float(text)
        return text


@dataclass(frozen=True)
class Resolved:
    """A spec checked with its overrides applied: what a run trains, and where it came from."""

    path: str
    text: str
    result: CheckResult
    overrides: Mapping[str, Any]

    @property
    def spec(self) -> Spec:
        assert self.result.spec is not None  # resolve() only returns checked specs
        return self.result.spec

    @property
    def train(self) -> Train:
        return self.spec.train

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def value_range(self) -> tuple[float, float]:
        return data_range(self.spec)

    @property
    def feeds(self) -> Conditioning:
        """What training feeds each network (resolve() refuses a spec it cannot feed)."""
        found = self.result.conditioning
        assert isinstance(found, Conditioning)
        return found


def train_flags() -> list[Flag]:
    """One Flag per field of Train, in the model's order."""
    return [_flag(name, info.annotation) for name, info in Train.model_fields.items()]


def flag_name(field: str) -> str:
    """``batch_size`` → ``--batch-size``."""
    return "--" + field.replace("_", "-")


def resolve(
    path: str | Path,
    overrides: Mapping[str, Any],
    base: Mapping[str, Any] | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Resolved:
    """Check the spec at ``path`` with ``overrides`` applied on top of its train section (or of ``base``).

    An override may also mend the file (``--loss hinge`` for a discriminator without sigmoid): only the spec as
    it will be trained must check. ``edit`` changes a copy of the file's data before anything is checked (the
    benchmark's bf16 variant drops the discriminator's final sigmoid); positions and text stay the file's.

    Raises SpecInvalid with every error, as ``archspec check`` would print them, when the file or the overridden
    spec does not check, and RunError naming the flag when an override is not a valid value.
    """
    try:
        source = read_source(path)
    except SourceError as exc:
        raise SpecInvalid([exc.error]) from None
    if edit is not None:
        data = copy.deepcopy(source.data)
        edit(data)
        source = dataclasses.replace(source, data=data)
    original = check_source(source)
    if original.spec is None:
        raise SpecInvalid(list(original.errors))
    merged = {**(base if base is not None else _yaml_train(original.spec.train)), **overrides}
    _validate_train(merged, overrides)
    result = original
    if merged != _yaml_train(original.spec.train):
        data = {**source.data, "train": {**(source.data.get("train") or {}), **merged}}
        result = check_source(Source(source.file, source.text, data, source.positions))
    if not result.ok or result.spec is None:
        # Errors the file has anyway are printed as they are; those the overrides brought say so.
        said = (
            " ".join(f"{flag_name(k)} {_show(v)}" for k, v in overrides.items()) or "a resumed run's settings"
        )
        known = {(e.path, e.message) for e in original.errors}
        raise SpecInvalid(
            [
                e
                if (e.path, e.message) in known
                else dataclasses.replace(e, detail=(*e.detail, f"with {said}"))
                for e in result.errors
            ]
        )
    if result.training_blocker is not None:
        raise RunError(f"{path}: archspec train cannot train this spec: {result.training_blocker}")
    return Resolved(str(path), source.text, result, dict(overrides))


def load_spec(path: str | Path) -> Spec:
    """The spec at ``path``, validated but not checked against its train section; SpecInvalid if invalid."""
    result = check_file(path)
    if result.spec is None:
        raise SpecInvalid(list(result.errors))
    return result.spec


def resume_base(checkpoint_train: Mapping[str, Any], checkpoint_text: str, spec: Spec) -> dict[str, Any]:
    """The train settings a resumed run starts from: the checkpoint's, plus what the spec file changed since.

    ``checkpoint_text`` is the spec file as the checkpoint stored it: a field whose value in the file is the
    same as then keeps the checkpoint's value (which may have come from a command-line override).
    """
    stored = check_text(checkpoint_text).spec
    before = _yaml_train(stored.train) if stored is not None else {}
    changed = {k: v for k, v in _yaml_train(spec.train).items() if before.get(k) != v}
    known = {k: v for k, v in checkpoint_train.items() if k in Train.model_fields}
    return {**known, **changed}


def train_changes(old: Mapping[str, Any], new: Train) -> list[str]:
    """``lr 0.0001 → 0.0002`` for each train setting that differs between a checkpoint and this run."""
    now = _yaml_train(new)
    return [f"{k} {_show(old.get(k))} → {_show(v)}" for k, v in now.items() if _yaml_value(old.get(k)) != v]


def train_dict(train: Train) -> dict[str, Any]:
    """The train section as JSON-ready data (tuples as lists), for run.json and checkpoints."""
    return train.model_dump(mode="json")


def _yaml_train(train: Train) -> dict[str, Any]:
    return {k: _yaml_value(v) for k, v in train.model_dump().items()}


def _yaml_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _validate_train(merged: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    try:
        Train.model_validate(dict(merged))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "train"
            where = (
                f"{flag_name(field)} {_show(merged.get(field))}" if field in overrides else f"train.{field}"
            )
            problems.append(f"{where}: {err['msg'][0].lower()}{err['msg'][1:]}")
        raise RunError("; ".join(problems)) from None


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(_show(v) for v in value)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _flag(name: str, annotation: Any) -> Flag:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = _is_union(annotation) and type(None) in typing.get_args(annotation)
    base = args[0] if optional else annotation
    while typing.get_origin(base) is typing.Annotated:
        base = typing.get_args(base)[0]
    if typing.get_origin(base) is Literal:
        return Flag(name, "choice", optional, tuple(str(a) for a in typing.get_args(base)))
    if typing.get_origin(base) is tuple:
        return Flag(name, "pair", optional)
    kinds: dict[Any, FlagKind] = {bool: "bool", int: "int", float: "float", str: "str"}
    if base not in kinds:
        raise TypeError(f"Train.{name}: no command-line form for {annotation!r}")  # a new kind of field
    return Flag(name, kinds[base], optional)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)
