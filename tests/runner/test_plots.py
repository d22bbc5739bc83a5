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


def test_evaluations_get_a_third_panel_with_every_metric_in_its_legend() -> None:
    quality = [
        {"step": s, "swd": 100.0 - s / 2, "ndb": 0.5, "coverage": 0.8, "fid": 80.0 - s / 3} for s in (50, 100)
    ]
    fig = loss_figure([*ROWS, *quality], "tiny: losses")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg's canvas has one
    top, _bottom, panel, right = fig.axes  # the panel's twin axis (NDB/K, coverage) comes last
    assert [line.get_xdata().tolist() for line in top.get_lines()] == [list(range(10, 110, 10))] * 2
    assert panel.get_ylabel() == "SWD ×1e3, FID (lower is better)" and right.get_ylim()[1] > 1.0
    legend = panel.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["SWD ×1e3", "FID", "NDB/K", "coverage"]
    box = legend.get_window_extent(renderer)
    assert not box.overlaps(panel.get_window_extent(renderer))  # beside the panel,
    assert not box.overlaps(right.yaxis.get_tightbbox(renderer))  # beyond the right axis's ticks and name
    assert fig.bbox.contains(*legend.get_window_extent(renderer).p1)


def test_without_fid_the_panel_shows_swd_alone_on_its_left_axis() -> None:
    quality = [{"step": 50, "swd": 100.0, "ndb": 0.5, "coverage": 0.8}]
    panel = loss_figure([*ROWS, *quality], "tiny: losses").axes[2]
    assert panel.get_ylabel() == "SWD ×1e3 (lower is better)" and len(panel.get_lines()) == 1
