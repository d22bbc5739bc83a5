"""The README's claims, held to the code: layer reference, shown output, the commands it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archspec.layers import LAYER_TYPES
from archspec.spec import Train

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _reference_rows() -> dict[str, str]:
    rows = re.findall(r"^\| `([a-z_0-9]+)` \| .*? \| (.*) \|$", README, flags=re.M)
    return dict(rows)


def test_layer_reference_lists_every_type_and_field() -> None:
    rows = _reference_rows()
    assert set(LAYER_TYPES) <= set(rows), set(LAYER_TYPES) - set(rows)
    for tag, cls in LAYER_TYPES.items():
        for name, info in cls.model_fields.items():
            field = info.alias or name  # ``from_`` is written ``from``
            if field not in ("type", "name"):
                assert re.search(rf"\b{field}\b", rows[tag]), f"README reference of {tag} lacks {field}"


def test_train_reference_lists_every_field() -> None:
    for field in Train.model_fields:
        assert f"`{field}`" in README, f"README does not document train.{field}"


@pytest.mark.parametrize(
    ("spec", "golden_name"), [("conv_gan", "conv_gan"), ("examples/resblock", "examples_resblock")]
)
def test_shown_tables_are_the_real_output(spec: str, golden_name: str) -> None:
    golden = (ROOT / "tests" / "golden" / f"check_{golden_name}.txt").read_text(encoding="utf-8")
    block = README.split(f"$ archspec check specs/{spec}.yaml\n", 1)[1].split("```", 1)[0]
    for line in block.splitlines():
        if line.strip() and line != "...":
            assert line in golden, f"README shows a line check does not print: {line!r}"


@pytest.mark.parametrize("script", ["scripts/demo.sh", "scripts/test.sh", "scripts/setup.sh", ".ci/run"])
def test_named_scripts_exist(script: str) -> None:
    assert (ROOT / script).is_file()


def test_ci_runs_the_readme_test_command() -> None:
    assert "bash scripts/test.sh" in README
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_shown_errors_are_the_real_output(monkeypatch: pytest.MonkeyPatch) -> None:
    from archspec.check import check_file
    from archspec.errors import SpecError

    monkeypatch.chdir(ROOT)  # the README shows paths relative to the checkout
    shown = re.findall(r"^\$ archspec check (specs/broken/\S+)\n((?:(?!\$ |```).*\n)+)", README, flags=re.M)
    assert len(shown) >= 6
    for path, text in shown:
        result = check_file(path)
        rendered = "\n".join(SpecError.render(e) for e in result.errors)
        assert text.startswith(rendered), f"README's output for {path} is stale"


def test_the_demo_trains_dcgan32_as_the_readme_says() -> None:
    import yaml

    demo = (ROOT / "scripts" / "demo.sh").read_text()
    spec = yaml.safe_load((ROOT / "specs" / "dcgan32.yaml").read_text())
    assert "archspec check specs/conv_gan.yaml" in demo  # the seed first
    assert "archspec train specs/dcgan32.yaml" in demo and '"${DEMO_STEPS:-750}"' in demo
    train = spec["train"]
    assert (train["max_steps"], train["batch_size"], train["loss"], train["shuffle"]) == (
        750,
        64,
        "bce_logits",
        True,
    )
    assert train["sample_every"] == 250 and "steps 250, 500 and 750" in README and "seed 0" in README
    golden = (ROOT / "tests" / "golden" / "check_dcgan32.txt").read_text()
    assert "1,732,224 (G 1,068,928 + D 663,296)" in golden and "G 1,068,928 and D 663,296" in README
