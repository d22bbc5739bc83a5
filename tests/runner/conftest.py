"""Shared helpers for the trainer's tests: the CLI in-process and as a subprocess, and tiny spec variants."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from archspec.cli import main
from runner.synthetic import synthetic_faces

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
TINY = SPECS / "tiny.yaml"


def faces(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """``n`` built-in synthetic faces as uint8 (N, 3, size, size)."""
    return torch.from_numpy(synthetic_faces(n, (size, size, 3), seed)).permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # The tiny nets are far too small for two threads to help; on a loaded 2-core machine they make steps 10x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``cli("train", ...)``: the archspec command line in this process; returns code, stdout and stderr."""
    monkeypatch.setenv("CI", "1")  # plain log lines, no live bar

    def run(*argv: str | Path) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def subprocess_env() -> dict[str, str]:
    """The environment for ``python -m archspec`` in a subprocess: one thread, plain output."""
    return {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def archspec_command(*argv: str | Path | int) -> list[str]:
    return [sys.executable, "-m", "archspec", *(str(a) for a in argv)]


def run_archspec(*argv: str | Path, cwd: Path, timeout: float = 60) -> Result:
    """``python -m archspec ARGV`` in a subprocess, to the end."""
    proc = subprocess.run(
        archspec_command(*argv),
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def spec_variant(
    tmp_path: Path, name: str = "variant", edit: Callable[[dict[str, Any]], None] | None = None, **train: Any
) -> Path:
    """A copy of specs/tiny.yaml with ``train`` fields changed and ``edit`` applied to its data."""
    data = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    data["train"].update(train)
    if edit is not None:
        edit(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def only_run(out: Path, spec_name: str = "tiny") -> Path:
    """The one run folder under ``out/<spec name>``."""
    runs = sorted((out / spec_name).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def one_error_line(result: Result) -> str:
    """The single ``error:`` line a failed command prints; fails the test if there is more, or a traceback."""
    assert result.code == 1, (result.code, result.out, result.err)
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    return lines[0]


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """``a`` equals ``b``: tensors exactly (torch.equal), mappings and sequences item by item; ``where`` names the item."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where
