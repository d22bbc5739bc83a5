"""Conditional GANs end to end: class labels and paired images from `data pack` to `train` to `sample`.

Real digits (scikit-learn's 1,797) and real faces (scikit-image's 200 LFW crops), packed by `archspec data pack`;
real runs and checkpoints on disk. The proofs that conditioning works: a classifier trained on the real digits
labels G(z, y) as y far above chance (10%), and a paired U-Net's L1 to its targets falls below the identity's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from runner.checkpoint import load_checkpoint
from runner.data import open_images
from runner.fidelity import class_fidelity, train_classifier
from runner.outputs import grid_size
from runner.sample import load_generator
from tests.runner.conftest import SPECS, Cli, one_error_line, only_run
from tests.runner.conftest import assert_same as _assert_same

DIGITS = SPECS / "digits"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's digits with their labels, packed at 16x16 by the real `archspec data pack`."""
    from sklearn.datasets import load_digits

    from archspec.cli import main

    folder = tmp_path_factory.mktemp("digits")
    loaded = load_digits()
    np.save(folder / "digits.npy", loaded.images)
    np.save(folder / "labels.npy", loaded.target)
    out = folder / "digits16.h5"
    args = ["data", "pack", folder / "digits.npy", out, "--size", 16, "--resize", "--channels", 1]
    assert main([str(a) for a in [*args, "--labels", folder / "labels.npy"]]) == 0
    return out


@pytest.fixture(scope="module")
def lfw_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-image's 200 LFW faces as targets, their Sobel edges as inputs, packed at 32x32."""
    from skimage import data, filters

    from archspec.cli import main

    folder = tmp_path_factory.mktemp("lfw")
    faces = data.lfw_subset()
    np.save(folder / "faces.npy", faces)
    np.save(folder / "edges.npy", np.stack([filters.sobel(f) for f in faces]))
    out = folder / "pairs.h5"
    args = ["data", "pack", folder / "faces.npy", out, "--size", 32, "--resize", "--channels", 1]
    assert main([str(a) for a in [*args, "--inputs", folder / "edges.npy"]]) == 0
    return out


def _train(cli: Cli, spec: Path, data: Path, out: Path, *args: object) -> Path:
    result = cli("train", spec, "--data", data, "--out", out, *args)
    assert result.code == 0, result.err
    name = yaml.safe_load(spec.read_text())["name"]
    return only_run(out, name)


def _variant(tmp_path: Path, spec: Path, edit: dict[str, object]) -> Path:
    data = yaml.safe_load(spec.read_text())
    data["train"].update(edit)
    path = tmp_path / spec.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- proof that conditioning works ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["acgan", "projection"])
def test_generated_digits_are_the_class_asked_for(cli: Cli, digits: Path, tmp_path: Path, name: str) -> None:
    run = _train(cli, DIGITS / f"{name}.yaml", digits, tmp_path, "--max-steps", 250, "--log-every", 250)
    classifier = train_classifier(open_images(str(digits), (1, 16, 16), (-1.0, 1.0)))
    assert classifier.held_out_accuracy > 0.9  # its verdicts can be trusted
    fidelity = class_fidelity(load_generator(run / "checkpoints" / "last.pt", CPU), classifier)
    assert fidelity > 0.5, fidelity  # chance is 0.1


@pytest.mark.slow
def test_a_paired_unet_beats_the_identity_on_real_faces(cli: Cli, lfw_pairs: Path, tmp_path: Path) -> None:
    spec = SPECS / "examples" / "unet.yaml"
    args = ("--max-steps", 150, "--batch-size", 16, "--shuffle", "--lr", "2e-4", "--log-every", 50)
    run = _train(cli, spec, lfw_pairs, tmp_path, *args)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("l1" in row for row in rows)
    loaded = load_generator(run / "checkpoints" / "last.pt", CPU)
    data = open_images(str(lfw_pairs), (3, 32, 32), (-1.0, 1.0), input_shape=(3, 32, 32))
    assert data.inputs is not None
    a, b = data.to_float(data.inputs), data.to_float(data.images)
    with torch.no_grad():
        made = loaded.gan.generator(a)
    identity, learned = float((a - b).abs().mean()), float((made - b).abs().mean())
    assert learned < 0.75 * identity, (learned, identity)


# --- what a conditional run writes ----------------------------------------------------------------------------


def test_an_acgan_run_logs_its_class_head_and_draws_a_row_per_class(
    cli: Cli, digits: Path, tmp_path: Path
) -> None:
    result = cli(
        "train",
        DIGITS / "acgan.yaml",
        "--data",
        digits,
        "--out",
        tmp_path,
        "--max-steps",
        4,
        "--log-every",
        2,
    )
    assert result.code == 0, result.err
    assert "class-conditional, 10 classes, class head on D" in result.out
    assert "10 classes" in result.out and "aux_weight 1" in result.out
    assert "acc_real" in result.out
    run = only_run(tmp_path, "digits_acgan")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"aux_d", "aux_g", "acc_real"} <= rows[-1].keys()
    assert 0.0 <= rows[-1]["acc_real"] <= 1.0
    with Image.open(run / "samples" / "final.png") as grid:
        assert grid.size == grid_size(80, 16, 16, columns=8)  # 10 classes x 8 latents
    assert load_checkpoint(run / "checkpoints" / "last.pt")["class_names"] == [str(k) for k in range(10)]


@pytest.mark.parametrize("spec", ["cgan", "acgan", "unet"])
def test_a_conditional_run_resumes_bit_exactly(
    cli: Cli, digits: Path, lfw_pairs: Path, tmp_path: Path, spec: str
) -> None:
    path = SPECS / "examples" / "unet.yaml" if spec == "unet" else DIGITS / f"{spec}.yaml"
    data = lfw_pairs if spec == "unet" else digits
    small = ("--limit", 64, "--batch-size", 4, "--shuffle", "--checkpoint-every", 3, "--ema", 0.9)
    whole = _train(cli, path, data, tmp_path / "whole", "--max-steps", 6, *small)
    split = _train(cli, path, data, tmp_path / "split", "--max-steps", 3, *small)
    resumed = cli("train", path, "--out", tmp_path / "split", "--resume", split, "--max-steps", 6)
    assert resumed.code == 0, resumed.err
    a = load_checkpoint(whole / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    for key in ("generator", "discriminator", "ema", "opt_g", "opt_d", "rng", "step"):
        _assert_same(a[key], b[key], key)


def test_wgan_gp_trains_a_projection_discriminator(cli: Cli, digits: Path, tmp_path: Path) -> None:
    spec = _variant(tmp_path, DIGITS / "projection.yaml", {"loss": "wgan_gp", "d_steps": 2})
    run = _train(cli, spec, digits, tmp_path / "out", "--max-steps", 3, "--limit", 128, "--log-every", 1)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(np.isfinite(row["loss_d"]) for row in rows)


def test_a_paired_run_shows_input_output_and_target_side_by_side(
    cli: Cli, lfw_pairs: Path, tmp_path: Path
) -> None:
    run = _train(
        cli, SPECS / "examples" / "unet.yaml", lfw_pairs, tmp_path, "--max-steps", 2, "--batch-size", 4
    )
    with Image.open(run / "samples" / "final.png") as grid:
        assert grid.size == grid_size(24, 32, 32, columns=3)  # 8 pairs: (a, G(a), b)


# --- sampling ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory: pytest.TempPathFactory, digits: Path) -> Path:
    from archspec.cli import main

    out = tmp_path_factory.mktemp("cgan")
    args = ["train", DIGITS / "cgan.yaml", "--data", digits, "--out", out, "--max-steps", 2, "--limit", 128]
    assert main([str(a) for a in args]) == 0
    return only_run(out, "digits_cgan")


def test_sample_draws_a_row_per_class_or_one_class(cli: Cli, cgan_run: Path, tmp_path: Path) -> None:
    every = cli("sample", cgan_run, "--n", 20, "--out", tmp_path / "all.png")
    assert every.code == 0 and "80 images" in every.out, every.err
    with Image.open(tmp_path / "all.png") as grid:
        assert grid.size == grid_size(80, 16, 16, columns=8)
    seven = cli("sample", cgan_run, "--class", "7", "--n", 9, "--out", tmp_path / "seven.png")
    assert seven.code == 0 and "9 images" in seven.out, seven.err
    with Image.open(tmp_path / "seven.png") as grid:
        assert grid.size == grid_size(9, 16, 16)
    default = cli("sample", cgan_run, "--class", "3")
    assert default.code == 0 and "_class3.png" in default.out


def test_sample_with_a_class_the_run_does_not_know_is_one_line(cli: Cli, cgan_run: Path) -> None:
    line = one_error_line(cli("sample", cgan_run, "--class", "seven"))
    assert "--class seven: not a class of this run (10 classes: 0, 1, 2" in line
    line = one_error_line(cli("sample", cgan_run, "--input", cgan_run))
    assert "takes no image to translate" in line


def test_sample_translates_a_folder_of_images(cli: Cli, tmp_path: Path, lfw_pairs: Path) -> None:
    run = _train(cli, SPECS / "examples" / "unet.yaml", lfw_pairs, tmp_path / "out", "--max-steps", 1)
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.new("RGB", (48, 40), (200, 30, 30)).save(photos / "a.png")
    Image.new("L", (32, 32), 90).save(photos / "sub" / "b.jpg")
    done = cli("sample", run, "--input", photos, "--out", tmp_path / "translated")
    assert done.code == 0 and "wrote 2 translations" in done.out, done.err
    for name in ("a.png", "sub/b.png"):
        with Image.open(tmp_path / "translated" / name) as made:
            assert made.size == (32, 32) and made.mode == "RGB"
    again = one_error_line(cli("sample", run, "--input", photos, "--out", tmp_path / "translated"))
    assert "already exists" in again
    line = one_error_line(cli("sample", run))
    assert "translates [3, 32, 32] images: give them with --input" in line


# --- faults, each one line before any step --------------------------------------------------------------------


def test_a_conditional_spec_with_unlabelled_data_is_one_line(
    cli: Cli, tmp_path: Path, lfw_pairs: Path
) -> None:
    line = one_error_line(cli("train", DIGITS / "cgan.yaml", "--data", lfw_pairs, "--out", tmp_path))
    assert "images without labels, but the spec takes a class label (10 classes)" in line
    assert not (tmp_path / "digits_cgan").exists()


def test_class_counts_that_differ_are_one_line(cli: Cli, tmp_path: Path, digits: Path) -> None:
    text = (DIGITS / "cgan.yaml").read_text().replace("{label: 10}", "{label: 12}")
    spec = tmp_path / "twelve.yaml"
    spec.write_text(text)
    line = one_error_line(cli("train", spec, "--data", digits, "--out", tmp_path))
    assert "10 classes (0, 1, 2, 3, 4, ...), but the spec's label input has 12" in line


def test_a_label_outside_the_spec_classes_is_one_line(cli: Cli, tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((8, 16, 16, 1), dtype=np.uint8)
        f["labels"] = np.array([0, 1, 2, 3, 4, 5, 6, 11], dtype=np.int64)
    line = one_error_line(cli("train", DIGITS / "cgan.yaml", "--data", path, "--out", tmp_path))
    assert "label 11" in line and "10" in line


def test_a_paired_spec_with_unpaired_data_is_one_line(cli: Cli, tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "faces.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    line = one_error_line(cli("train", SPECS / "examples" / "unet.yaml", "--data", path, "--out", tmp_path))
    assert "images without paired inputs, but the generator translates a [3, 32, 32] image" in line


def test_a_super_resolution_run_makes_its_inputs_from_its_images() -> None:
    from archspec.check import check_file
    from archspec.conditioning import Conditioning
    from runner.conditions import super_resolution, with_downscaled_inputs
    from runner.data import DataInfo, ImageSet

    srgan = check_file(SPECS / "zoo" / "pg_srgan.yaml").conditioning
    pix2pix = check_file(SPECS / "zoo" / "pg_pix2pix.yaml").conditioning
    assert isinstance(srgan, Conditioning) and isinstance(pix2pix, Conditioning)
    assert super_resolution(srgan, (3, 256, 256)) and not super_resolution(pix2pix, (3, 256, 256))
    # flat colours stay themselves; a left-dark, right-bright image stays so, smaller
    colours = torch.randint(
        0, 256, (3, 3, 1, 1), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    images = colours.expand(3, 3, 32, 32).clone()
    images[2, :, :, 16:] = 255
    images[2, :, :, :16] = 0
    data = ImageSet(images, DataInfo("x", "packed", 3, (32, 32, 3), (-1.0, 1.0)))
    made = with_downscaled_inputs(data, (3, 8, 8))
    assert made.inputs is not None and made.inputs.dtype == torch.uint8 and made.inputs.shape == (3, 3, 8, 8)
    assert torch.equal(made.inputs[:2], colours[:2].expand(2, 3, 8, 8))
    assert (made.inputs[2, :, :, :3] < 20).all() and (made.inputs[2, :, :, 5:] > 235).all()
    assert made.info.input_shape == (3, 8, 8) and made.images is images


def test_bench_refuses_a_conditional_spec_with_one_line(cli: Cli) -> None:
    line = one_error_line(cli("bench", DIGITS / "acgan.yaml", "--steps", 1))
    assert "archspec bench times unconditional specs" in line and "class head on D" in line


# --- the zoo's conditional specs -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["pg_cgan", "pg_acgan", "mimicry_cgan_pd32", "studiogan_biggan32", "pg_pix2pix", "pg_srgan"]
)
def test_the_zoo_conditional_specs_run_a_dry_run(cli: Cli, name: str) -> None:
    result = cli("train", SPECS / "zoo" / f"{name}.yaml", "--dry-run", "--batch-size", 2, "--d-steps", 1)
    assert result.code == 0, result.err
    assert "dry run: one step of everything" in result.out


def test_a_conditional_run_is_evaluated_during_training_and_by_eval(
    cli: Cli, digits: Path, tmp_path: Path
) -> None:
    args = ("--max-steps", 4, "--limit", 256, "--eval-every", 2, "--eval-samples", 120, "--log-every", 2)
    run = _train(cli, DIGITS / "acgan.yaml", digits, tmp_path, *args)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "swd" in row] == [2, 4]
    assert (run / "checkpoints" / "best.pt").is_file()
    measured = cli("eval", run, "--data", digits, "--n", 100, "--json")
    assert measured.code == 0, measured.err
    doc = json.loads(measured.out)
    assert doc["generated_images"] == 100 and doc["metrics"]["swd"] > 0
