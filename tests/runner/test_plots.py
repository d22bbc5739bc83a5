"""loss.png: the legends beside the curves, never over them, and the score axis saying what the scores are."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.losses import LOSS_NAMES
from runner.outputs import SCORE_AXES, loss_figure, plot_losses

ROWS = [
    {"step": s, "loss_d": 1.0 + s / 100, "loss_g": 2.0 - s / 100, "d_real": 0.9, "d_fake": 0.1}
    for s in range(10, 110, 10)
]


def test_every_loss_has_its_score_axis() -> None:
    assert set(SCORE_AXES) == set(LOSS_NAMES)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_legends_sit_beside_the_plots_and_the_axis_names_the_scores(loss: str) -> None:
    fig = loss_figure(ROWS, "tiny: losses", loss)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg's canvas has one
    top, bottom = fig.axes
    for ax in (top, bottom):
        legend = ax.get_legend()
        assert legend is not None
        assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
        assert fig.bbox.contains(*legend.get_window_extent(renderer).p1)  # and still on the picture
    assert bottom.get_ylabel() == SCORE_AXES[loss]
    assert ("probability" in bottom.get_ylabel()) is (loss == "bce")
    assert [t.get_text() for t in bottom.get_legend().get_texts()] == ["D(x), real", "D(G(z)), fake"]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    plot_losses(ROWS, tmp_path / "loss.png", "tiny: losses", "bce_logits")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
