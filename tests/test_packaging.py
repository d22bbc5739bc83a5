"""What a user who installs archspec gets: the specs inside the wheel, found by name (``archspec check conv_gan``,
``archspec list``, ``archspec new``), py.typed, and a pyproject that builds without deprecation boxes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from archspec.builtin import builtin_specs, find_spec, renamed, specs_dir
from archspec.cli import main

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; on 3.10 these checks run elsewhere

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_an_spdx_string() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"  # a TOML table makes setuptools print a deprecation box


def test_every_python_package_of_the_tree_is_listed() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    for top in ("archspec", "runner"):
        for init in (ROOT / top).rglob("__init__.py"):
            package = ".".join(init.parent.relative_to(ROOT).parts)
            assert package in listed, f"add {package} to [tool.setuptools] packages"


def test_builtin_specs_are_the_files_of_specs() -> None:
    assert specs_dir() == ROOT / "specs"  # a checkout: the top-level folder
    names = {spec.name: spec.path for spec in builtin_specs()}
    assert set(names.values()) == set((ROOT / "specs").rglob("*.yaml"))
    assert names["conv_gan"] == ROOT / "specs" / "conv_gan.yaml"
    assert names["broken/pad"] == ROOT / "specs" / "broken" / "pad.yaml"


def test_a_name_finds_the_builtin_spec_and_a_path_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_spec("tiny") == str(ROOT / "specs" / "tiny.yaml")
    (tmp_path / "tiny").write_text("a file of that name")
    assert find_spec("tiny") == "tiny"
    assert find_spec("nope") == "nope" and find_spec("tiny.yaml") == "tiny.yaml"


def test_check_and_list_by_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["check", "conv_gan", "broken/pad"]) == 1
    out, err = capsys.readouterr()
    assert "conv_gan · generator" in out and "pad.yaml:22:7: error:" in err
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("conv_gan ") and "The seed" in lines[0]
    assert any(line.startswith("broken/typo ") for line in lines)
    assert lines[-1].startswith(f"({len(builtin_specs())} specs in {ROOT / 'specs'}")


def test_new_copies_a_spec_under_a_new_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new", "my_gan", "--from", "dcgan64"]) == 0
    text = (tmp_path / "my_gan.yaml").read_text()
    assert text == renamed((ROOT / "specs" / "dcgan64.yaml").read_text(), "my_gan")
    assert "\nname: my_gan\n" in text and text.startswith("# DCGAN")  # comments kept
    assert "wrote my_gan.yaml (name: my_gan)" in capsys.readouterr().out
    assert main(["check", "my_gan.yaml"]) == 0
    capsys.readouterr()
    assert main(["new", "my_gan", "--from", "tiny"]) == 1
    assert capsys.readouterr().err == "error: my_gan.yaml: already exists; pass --force to replace it\n"
    assert main(["new", "bad name", "--from", "tiny"]) == 1
    assert "letters, digits" in capsys.readouterr().err
    assert main(["new", "other", "--from", "no_such_spec"]) == 1
    assert "archspec list" in capsys.readouterr().err
    assert main(["new", "copy", "--from", "my_gan.yaml"]) == 0
    assert "name: copy\n" in (tmp_path / "copy.yaml").read_text()


def test_renamed_adds_a_name_where_there_is_none() -> None:
    assert renamed("latent: 8\n", "x") == "name: x\nlatent: 8\n"
    assert renamed("name: a  # the old one\nlatent: 8\n", "b") == "name: b  # the old one\nlatent: 8\n"


@pytest.mark.slow
def test_the_wheel_ships_the_specs_and_checks_one_by_name_from_a_fresh_venv(tmp_path: Path) -> None:
    """Build the wheel from a copy of the tree, install it into a new venv (no network: its dependencies come
    from this interpreter's site-packages through a .pth file), and use it from an empty folder."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "archspec", "runner", "specs"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name)
    for cache in src.rglob("__pycache__"):
        shutil.rmtree(cache)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = _run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")])
    assert "deprecated" not in built and "would be ignored" not in built, built
    (wheel,) = (tmp_path / "dist").glob("archspec-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = {
        f"archspec/specs/{p.relative_to(ROOT / 'specs').as_posix()}" for p in (ROOT / "specs").rglob("*.yaml")
    }
    assert shipped <= names and "archspec/py.typed" in names
    assert not any(n.startswith(("tests/", "specs/")) for n in names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)])
    purelib = subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    Path(purelib, "_archspec_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    archspec = str(venv / "bin" / "archspec")
    check = subprocess.run([archspec, "check", "conv_gan"], cwd=work, env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "conv_gan · generator" in check.stdout
    listing = subprocess.run(
        [archspec, "list"], cwd=work, env=env, capture_output=True, text=True, check=True
    )
    assert f"specs in {purelib}/archspec/specs" in listing.stdout
    dry = subprocess.run(
        [archspec, "train", "tiny", "--dry-run"], cwd=work, env=env, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr  # the trainer's entry point, from the installed metadata
    assert f"{purelib}/archspec/specs/tiny.yaml" in dry.stdout


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr
