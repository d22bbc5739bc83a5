"""``check``: a spec file in, every shape and every error out. The pipeline behind ``archspec check`` and
``archspec.load``: read (positions kept) → validate (pydantic) → trace (shapes) → contract (GAN and training)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from archspec.conditioning import Conditioning, conditioning
from archspec.contract import fault_finding, gan_findings, image_order, image_order_finding
from archspec.errors import SpecError
from archspec.graph import Finding
from archspec.layers import MAX_SIZE, Layer
from archspec.source import Source, SourceError, dotted, parse_source, read_source
from archspec.spec import Latent, Network, Spec
from archspec.trace import NetworkTrace, Role, Totals, totals, trace_network, trace_spec
from archspec.validate import validate


@dataclass(frozen=True)
class CheckResult:
    """Everything ``check`` learned about one spec file."""

    file: str
    spec: Spec | None
    generator: NetworkTrace | None
    discriminator: NetworkTrace | None
    errors: tuple[SpecError, ...]
    batch_size: int
    text: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def totals(self) -> Totals | None:
        if self.generator is None or self.discriminator is None:
            return None
        return totals(self.generator, self.discriminator, self.batch_size)

    @property
    def conditioning(self) -> Conditioning | str | None:
        """What training feeds each network (``archspec.conditioning``), why it cannot (a str), or None for a spec
        that does not check."""
        if self.generator is None or self.discriminator is None:
            return None
        return conditioning(self.generator, self.discriminator)

    @property
    def training_blocker(self) -> str | None:
        """Why ``archspec train`` cannot train this (valid) spec, or None."""
        found = self.conditioning
        return found if isinstance(found, str) else None


def check_file(path: str | Path, batch_size: int | None = None) -> CheckResult:
    """Check the spec at ``path``; ``batch_size`` overrides ``train.batch_size`` for the memory totals."""
    try:
        source = read_source(path)
    except SourceError as exc:
        return CheckResult(str(path), None, None, None, (exc.error,), batch_size or 1)
    return check_source(source, batch_size)


def check_text(text: str, name: str = "<string>", batch_size: int | None = None) -> CheckResult:
    """Check spec text (for tests and notebooks)."""
    try:
        source = parse_source(text, name)
    except SourceError as exc:
        return CheckResult(name, None, None, None, (exc.error,), batch_size or 1)
    return check_source(source, batch_size)


def check_source(source: Source, batch_size: int | None = None) -> CheckResult:
    spec, errors = validate(source)
    if spec is None:
        # Report every problem at once: a network whose layers validated is still traced for shape errors.
        errors += [_error(source, f) for f in _faults_of_valid_networks(source.data)]
        errors.sort(key=lambda e: (e.line, e.column))
        return CheckResult(source.file, None, None, None, tuple(errors), batch_size or 1, source.text)
    batch = batch_size or spec.train.batch_size
    if batch != spec.train.batch_size:
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"batch_size": batch})})
    generator, discriminator = trace_spec(spec)
    errors = [_error(source, f) for f in spec_findings(spec, generator, discriminator)]
    errors.sort(key=lambda e: (e.line, e.column))
    return CheckResult(source.file, spec, generator, discriminator, tuple(errors), batch, source.text)


def spec_findings(spec: Spec, generator: NetworkTrace, discriminator: NetworkTrace) -> list[Finding]:
    """Every problem of a validated spec: each network's graph and layer faults, then the GAN contract and train
    fit."""
    findings: list[Finding] = []
    for net, target in ((generator, spec.image), (discriminator, (1,))):
        findings += list(net.findings)
        findings += [fault_finding(fault, net, spec, target) for fault in net.faults]
    findings += gan_findings(spec, generator, discriminator)
    swapped = image_order(spec) if findings else None
    if swapped is not None and not spec_findings(swapped, *trace_spec(swapped)):
        return [image_order_finding(spec, swapped)]  # one error for [H, W, C], not one per layer it upsets
    return findings


def _error(source: Source, finding: Finding) -> SpecError:
    """A finding at its YAML position; inside a block, with the line of each use that led there."""
    detail = finding.detail + tuple(_used_at(source, finding))
    if finding.at_key:
        line, column = source.key_position(finding.loc)
        return SpecError(source.file, line, column, finding.path, finding.message, finding.fix, detail)
    return source.error(finding.loc, finding.path, finding.message, fix=finding.fix, detail=detail)


def _used_at(source: Source, finding: Finding) -> list[str]:
    """``in block res_up, used at spec.yaml:40:7 (generator.layers[3])``, innermost block first."""
    lines = []
    inner = finding.loc
    for use in reversed(finding.uses):
        if inner[:1] != ("blocks",):
            break
        line, column = source.position(use)
        lines.append(f"in block {inner[1]}, used at {source.file}:{line}:{column} ({dotted(use)})")
        inner = use
    return lines


def _faults_of_valid_networks(data: dict[str, Any]) -> list[Finding]:
    """Layer faults of each network that validates on its own and whose input (latent or image) is valid."""
    inputs: tuple[tuple[Role, tuple[int, ...] | None], ...] = (
        ("generator", _latent_shape(data.get("latent"))),
        ("discriminator", _image_shape(data.get("image"))),
    )
    findings: list[Finding] = []
    for role, shape in inputs:
        try:
            network = Network.model_validate(data.get(role))
        except ValidationError:
            continue
        chain = network.inputs is None and all(
            isinstance(n, Layer) and n.from_ is None and n.repeat is None for n in network.layers
        )
        if shape is not None and chain:
            trace = trace_network(role, shape, [n for n in network.layers if isinstance(n, Layer)])
            findings += [fault_finding(fault, trace) for fault in trace.faults]
    return findings


def _latent_shape(value: Any) -> tuple[int] | None:
    try:
        return (Latent.model_validate({"size": value} if isinstance(value, int) else value).size,)
    except ValidationError:
        return None


def _image_shape(value: Any) -> tuple[int, int, int] | None:
    if isinstance(value, list) and len(value) == 3 and all(_size(v) for v in value):
        return (value[0], value[1], value[2])
    return None


def _size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SIZE
