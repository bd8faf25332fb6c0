"""The report's matplotlib figures, each embedded as a base64 PNG data URI."""

from __future__ import annotations

import base64
import io
import math
from html import escape

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from swarmflower.report.run_files import Run, ordered


def _png_uri(figure: Figure) -> str:
    """The figure as a data URI, without a Software tag naming a web address."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure_html(figure: Figure, alt: str, caption: str) -> str:
    return (
        f"<figure><img src='{_png_uri(figure)}' alt='{escape(alt)}'>"
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _by_method(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    groups = dict(list(frame.groupby("method", sort=False)))
    return [(m, groups[m]) for m in ordered(list(groups))]


def curves_figure(run: Run, colours: dict[str, str]) -> str:
    figure = Figure(figsize=(6.2, 4.2), layout="constrained")
    axes = figure.subplots()
    banded = False
    for method, rounds in _by_method(run.rounds):
        curve = rounds.groupby("round")["accuracy"].agg(["mean", "std", "count"])
        colour = colours.get(method, "C9")
        axes.plot(curve.index, curve["mean"], color=colour, label=method, marker="o")
        if (curve["count"] > 1).any():
            banded = True
            low, high = curve["mean"] - curve["std"], curve["mean"] + curve["std"]
            axes.fill_between(curve.index, low, high, color=colour, alpha=0.2, lw=0)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(xlabel="round", ylabel="mean per-site test accuracy")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    caption = "Mean per-site test accuracy after each round"
    caption += (
        ", averaged over seeds; the band is ± one standard deviation over seeds."
        if banded
        else "."
    )
    return _figure_html(figure, "learning curves", caption)


def _mean_roc(points: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """The seeds' curves averaged at fixed false-positive rates."""
    curves = []
    for _, seed in points.groupby("seed"):
        top = seed.groupby("fpr")["tpr"].max()  # the top of each vertical step
        fpr = np.concatenate([[0.0], top.index.to_numpy(), [1.0]])
        tpr = np.concatenate([[0.0], top.to_numpy(), [1.0]])
        curves.append(np.interp(grid, fpr, tpr))
    return np.mean(curves, axis=0)


def roc_figure(run: Run, colours: dict[str, str]) -> str:
    figure = Figure(figsize=(5.2, 4.2), layout="constrained")
    axes = figure.subplots()
    grid = np.linspace(0, 1, 201)
    for method, points in _by_method(run.roc):
        auc = run.stat(method, "global_auc")
        known = auc is not None and not math.isnan(auc.value)
        label = f"{method} (AUC {auc.value:.3f})" if known else method
        curve = _mean_roc(points, grid)
        axes.plot(grid, curve, color=colours.get(method, "C9"), label=label)
    axes.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1)
    axes.set(xlabel="false-positive rate (1 − specificity)", xlim=(0, 1))
    axes.set(ylabel="true-positive rate (sensitivity)", ylim=(0, 1.01))
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="lower right")
    caption = (
        "ROC curves on all sites' test rows together. Each line averages the seeds' "
        "curves at fixed false-positive rates; the AUC is the mean over seeds from "
        "summary.csv. The dashed diagonal is guessing by coin toss."
    )
    return _figure_html(figure, "ROC curves", caption)
