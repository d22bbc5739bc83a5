"""The archspec command line: exit codes, tables (golden files), JSON, errors, and what it must not import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archspec.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
GOLDEN = Path(__file__).parent / "golden"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "name", ["conv_gan", "dcgan32", "dcgan64", "tiny", "examples/resblock", "zoo/mimicry_sngan32"]
)
def test_check_tables_match_golden_files(
    capsys: pytest.CaptureFixture[str], name: str, monkeypatch: pytest.MonkeyPatch, update_golden: bool
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run(capsys, "check", f"specs/{name}.yaml")
    assert (code, err) == (0, "")
    golden = GOLDEN / f"check_{name.replace('/', '_')}.txt"
    if update_golden:
        golden.write_text(out, encoding="utf-8")
    assert out == golden.read_text(encoding="utf-8"), "after a deliberate change: pytest --update-golden"


def test_seed_table_shows_the_seed_facts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", str(SPECS / "conv_gan.yaml"))
    assert code == 0
    for fact in (
        "(11−1)·2 − 2·0 + 7 + 0 + 1 = 28",
        "(28−1)·2 − 2·0 + 7 + 0 + 1 = 62",
        "(62−1)·2 − 2·1 + 7 + 0 + 1 = 128",
        "4,330,816",
        "4,294,448",
        "85.55 GFLOP",
        "✓ generator out [3, 128, 128] = image [3, 128, 128] = discriminator in [3, 128, 128]",
    ):
        assert fact in out
    assert "\x1b[" not in out  # piped: plain text


def test_batch_size_changes_only_the_activation_memory(capsys: pytest.CaptureFixture[str]) -> None:
    _, one, _ = run(capsys, "check", "--json", str(SPECS / "conv_gan.yaml"))
    _, many, _ = run(capsys, "check", "--json", "--batch-size", "64", str(SPECS / "conv_gan.yaml"))
    a, b = json.loads(one)["totals"], json.loads(many)["totals"]
    assert b["activations_bytes"] == 64 * a["activations_bytes"]
    assert b["weights_bytes"] == a["weights_bytes"] and b["batch_size"] == 64


def test_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "--json", str(SPECS / "conv_gan.yaml"))
    doc = json.loads(out)
    assert code == 0 and doc["valid"] and doc["errors"] == []
    layer = doc["generator"]["layers"][9]
    assert layer["type"] == "conv_transpose2d"
    assert (layer["input"], layer["output"]) == ([256, 62, 62], [3, 128, 128])
    assert layer["params"] == 49_155 and layer["macs"] == 62 * 62 * 256 * 3 * 64
    assert doc["totals"]["params"] == 4_330_816 + 4_294_448


def test_json_errors_carry_position_and_fix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "pad.yaml"
    spec.write_text((SPECS / "conv_gan.yaml").read_text().replace("stride: 2, padding: 1}", "stride: 2}"))
    code, out, _ = run(capsys, "check", "--json", str(spec))
    doc = json.loads(out)
    assert code == 1 and not doc["valid"]
    [error] = doc["errors"]
    assert error["path"] == "generator.layers[9] (conv_transpose2d)"
    assert error["fix"] == "padding: 1 gives 128×128"
    assert (error["file"], error["line"]) == (str(spec), 22)
    assert error["column"] > 0 and "130×130" in error["message"]


def test_invalid_spec_prints_errors_to_stderr_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        (SPECS / "tiny.yaml")
        .read_text()
        .replace("kernel_size: 4, stride: 2, padding: 1}   # 16x16", "kernel_size: 4, stride: 2}   # 16x16")
    )
    code, out, err = run(capsys, "check", str(spec))
    assert code == 1 and out == ""
    first = err.splitlines()[0]
    assert first.startswith(f"{spec}:") and ": error: generator.layers[6] (conv_transpose2d): " in first
    assert "fix: padding: 1 gives 16×16" in err
    assert err.rstrip().endswith("1 error")


@pytest.mark.parametrize("columns", ["160", "40"])
def test_a_piped_error_line_is_never_wrapped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    spec = tmp_path / "a_spec_file_with_a_rather_long_name_to_make_the_line_long.yaml"
    spec.write_text(
        (SPECS / "tiny.yaml").read_text().replace("out_features: 128}", "out_features: 1" + "0" * 150 + "}")
    )
    code, _, err = run(capsys, "check", str(spec))
    assert code == 1
    first, *rest = err.splitlines()
    assert len(first) > 200  # one line, however long and whatever COLUMNS says
    assert first.startswith(f"{spec}:") and first.endswith("0" * 150)
    assert rest == [f"{spec}: 1 error"]


def test_format_github_prints_one_annotation_per_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "check", "--format", "github", str(SPECS / "broken" / "pad.yaml"), str(SPECS / "tiny.yaml")
    )
    assert code == 1 and err == ""
    pad = SPECS / "broken" / "pad.yaml"
    assert out.splitlines() == [
        f"::error file={pad},line=22,col=7,title=archspec::generator.layers[9] (conv_transpose2d): output "
        "130×130, the image is 128×128%0A(62−1)·2 − 2·0 + 7 + 0 + 1 = 130%0Afix: padding: 1 gives 128×128",
        f"{pad}: 1 error",
        f"{SPECS / 'tiny.yaml'}: ok",
    ]


def test_format_github_escapes_what_the_runner_would_split_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "a,b:c%.yaml"
    code, out, _ = run(capsys, "check", "--format", "github", str(spec))
    assert code == 1
    escaped = str(spec).replace("%", "%25").replace(":", "%3A").replace(",", "%2C")
    assert out.splitlines()[0].startswith(f"::error file={escaped},title=archspec::")  # no line: no such file


def test_several_specs_exit_1_if_any_is_invalid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    code, out, err = run(capsys, "check", str(SPECS / "tiny.yaml"), str(missing))
    assert code == 1
    assert "tiny · generator" in out
    assert f"{missing}: error: no such file" in err


@pytest.mark.parametrize("argv", [[], ["check"], ["check", "--batch-size", "0", "x.yaml"], ["frobnicate"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        code = main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2


def test_schema_is_json_schema_of_the_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema")
    schema = json.loads(out)
    assert code == 0
    # latent is required unless the generator declares inputs without one (checked by archspec check)
    assert set(schema["required"]) >= {"name", "image", "generator", "discriminator"}
    layer_tags = json.dumps(schema["$defs"])
    assert '"conv_transpose2d"' in layer_tags and '"view"' in layer_tags


def test_summary_runs_torchinfo_without_weights(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "summary", str(SPECS / "conv_gan.yaml"))
    assert code == 0
    assert "Total params: 4,330,816" in out and "Total params: 4,294,448" in out
    # torchinfo's Mult-Adds and check's MACs side by side, with why they differ.
    assert out.rstrip().endswith("check's MACs at batch 1: G 3,483,258,316 · D 3,245,457,708")
    assert "each bias as one more multiply-add" in out


def test_check_imports_no_torch() -> None:
    code = (
        "import sys; from archspec.cli import main; rc = main(['check', 'specs/conv_gan.yaml']);"
        "assert rc == 0, rc; assert 'torch' not in sys.modules, 'check imported torch'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_python_dash_m_and_no_color(tmp_path: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "archspec", "check", "specs/tiny.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "\x1b[" not in proc.stdout and "tiny · discriminator" in proc.stdout


def test_unreadable_inputs_never_show_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "bytes.yaml").write_bytes(b"name: x\n\xff\xfe\n")
    (tmp_path / "empty.yaml").write_text("")
    cases = [tmp_path, tmp_path / "missing.yaml", tmp_path / "bytes.yaml", tmp_path / "empty.yaml"]
    for path in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "archspec", "check", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1, path
        assert "Traceback" not in proc.stderr and proc.stderr.startswith(str(path)), proc.stderr
