"""Hostile spec files: each is refused (or checked) quickly, with one error and no traceback.

Files are generated small (or sparse) in tmp_path; nothing large is written. Times are not asserted (the test
machine is shared); what is asserted is that the work is bounded: nothing read past the limit, nothing
rendered past the row and error caps.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from archspec.check import check_file
from archspec.cli import main
from archspec.report import MAX_ERRORS, MAX_TABLE_ROWS
from archspec.source import MAX_BYTES, MAX_NODES, SourceError, read_source

ROOT = Path(__file__).resolve().parents[1]
TINY = (ROOT / "specs" / "tiny.yaml").read_text(encoding="utf-8")


def _spec(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _with_generator_layers(extra: str) -> str:
    marker = "    - {type: sigmoid}\n\ndiscriminator"
    return TINY.replace(marker, extra + marker)


def _source_error(path: Path) -> str:
    with pytest.raises(SourceError) as info:
        read_source(path)
    return info.value.error.message


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(_source_error(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert result == ["is a FIFO (named pipe), not a regular file; a spec is read from a file"]


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused_before_reading(device: str) -> None:
    if not Path(device).exists() or not stat.S_ISCHR(os.stat(device).st_mode):
        pytest.skip(f"no {device}")
    assert (
        _source_error(Path(device)) == "is a character device, not a regular file; a spec is read from a file"
    )


def test_an_oversized_file_is_read_no_further_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB declared, nothing on disk
    assert _source_error(path) == f"file is {1 << 30:,} bytes; a spec is at most {MAX_BYTES:,}"


@pytest.mark.parametrize("name", [".", "..", ".hidden"])
def test_a_spec_name_cannot_leave_or_hide_in_the_runs_folder(tmp_path: Path, name: str) -> None:
    result = check_file(_spec(tmp_path, TINY.replace("name: tiny", f"name: '{name}'")))
    assert [e.path for e in result.errors] == ["name"]
    assert "must not start with '.'" in result.errors[0].message


def test_an_integer_literal_of_5000_digits_is_one_error(tmp_path: Path) -> None:
    result = check_file(_spec(tmp_path, TINY.replace("latent: 16", "latent: " + "9" * 5000)))
    (error,) = result.errors
    assert (error.path, error.message) == (
        "latent",
        "a number of 5,000 digits; no field takes one that large",
    )


def test_60000_layers_check_and_print_a_bounded_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _spec(tmp_path, _with_generator_layers("    - {type: relu}\n" * 60_000))
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "⋮" in out and f"{60_000 + 8 - MAX_TABLE_ROWS:,} more layers (--json lists them all)" in out
    assert len(out.splitlines()) < 2 * MAX_TABLE_ROWS + 60


def test_60000_errors_print_a_bounded_number_and_count_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _spec(tmp_path, _with_generator_layers("    - {type: relu, inplac: true}\n" * 60_000))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 * MAX_ERRORS + 2  # each error and its fix, the count of the rest, the total
    assert err[-2] == f"... and {60_000 - MAX_ERRORS:,} more errors (--json lists them all)"
    assert err[-1].endswith(": 60,000 errors")


def test_a_big_file_with_a_syntax_error_is_refused_by_libyaml(tmp_path: Path) -> None:
    path = _spec(tmp_path, _with_generator_layers("    - {type: relu}\n" * 5_000 + "    - {type: [}\n"))
    (error,) = check_file(path).errors
    assert error.message.startswith("YAML syntax:") and error.line == 5_000 + 15


def test_a_control_character_after_multibyte_text_is_placed_in_characters(tmp_path: Path) -> None:
    text = "# " + "é" * 40_000 + "\nname: x\x07y\n"
    (error,) = check_file(_spec(tmp_path, text)).errors
    assert (error.line, error.column) == (2, 8)
    assert error.message == "control character U+0007 is not allowed in YAML text"


def test_summary_refuses_a_spec_too_big_for_the_machine_with_both_numbers(tmp_path: Path) -> None:
    # Passes check (each layer under 2^31 parameters) but needs ~8.5e9 parameters: 136 GB to train.
    layers = "    - {type: linear, out_features: 32768}\n" + (
        "    - {type: linear, out_features: 65000}\n    - {type: linear, out_features: 32768}\n" * 2
    )
    path = _spec(
        tmp_path,
        TINY.replace(
            "    - {type: linear, out_features: 128}\n", layers + "    - {type: linear, out_features: 128}\n"
        ),
    )
    assert check_file(path).ok
    proc = subprocess.run(
        [sys.executable, "-m", "archspec", "summary", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert (
        line.startswith(f"error: {path}: the training step needs about 136.") and "GB of this machine" in line
    )


def test_summary_with_a_batch_of_10_to_the_12_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(ROOT / "specs" / "tiny.yaml"), "--batch-size", str(10**12)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "at batch size 1000000000000" in line


def test_100000_layers_are_refused_while_composing(tmp_path: Path) -> None:
    path = _spec(tmp_path, _with_generator_layers("    - {type: relu}\n" * 100_000))
    (error,) = check_file(path).errors
    assert error.message == f"more than {MAX_NODES:,} YAML nodes" and error.line < 100_000
