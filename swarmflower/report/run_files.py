"""Reading and checking a run's result files for `report.html`.

`summary.csv` is required; `rounds.csv`, `roc.csv` and `run.json` are read
when present. Every problem is a one-line `DataError` naming the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from swarmflower.errors import DataError
from swarmflower.simulations.experiments.methods import METHODS

DATA = "data"  # the pseudo-method of summary.csv's rows about the data itself

SUMMARY_NUMBERS = ("value", "test_rows", "positives", "sd", "ci_low", "ci_high")
SUMMARY_NUMBERS += ("seeds",)
SUMMARY_OPTIONAL = SUMMARY_NUMBERS + ("note",)
ROUNDS_COLUMNS = ("method", "seed", "round", "accuracy", "leader", "view", "reason")
ROUNDS_COLUMNS += ("contributors",)
ROUNDS_NUMBERS = ("seed", "round", "accuracy")
ROC_COLUMNS = ("method", "seed", "fpr", "tpr")
META_TYPES = {"title": str, "task": str, "rounds": int, "seeds": list}
META_TYPES |= {"methods": list, "sites": list, "legend": dict}
META_TYPES |= {"strategy": str, "bucketing": int, "attack": str, "attackers": list}


@dataclass(frozen=True)
class Stat:
    """One summary.csv figure: the mean over seeds, its spread and support."""

    value: float
    sd: float = math.nan
    low: float = math.nan
    high: float = math.nan
    test_rows: float = math.nan
    positives: float = math.nan


@dataclass
class Run:
    """Everything the page shows, read and checked once."""

    directory: Path
    stats: dict[tuple[str, str, str], Stat]
    data: pd.DataFrame
    meta: dict
    methods: list[str] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)
    rounds: pd.DataFrame | None = None
    roc: pd.DataFrame | None = None
    files: list[str] = field(default_factory=lambda: ["summary.csv"])

    def stat(self, method: str, metric: str, site: str = "") -> Stat | None:
        return self.stats.get((method, metric, site))


def load_run(directory: Path) -> Run:
    """Read the result files; a DataError names the file and its problem."""
    path = directory / "summary.csv"
    if not path.is_file():
        raise DataError(
            f"no summary.csv in {directory}: run "
            f"`swarmflower compare --out {directory}` first"
        )
    summary = _read_csv(path, ("method", "metric", "value", "site"))
    for column in SUMMARY_OPTIONAL:
        if column not in summary.columns:
            summary[column] = ""
    summary = _numbers(summary, SUMMARY_NUMBERS, path)
    is_data = summary["method"] == DATA
    stats = _stats(summary[~is_data], path)
    if not stats:
        raise DataError(f"{path}: no method rows (only a header or data rows)")
    run = Run(directory, stats, summary[is_data], _read_meta(directory / "run.json"))
    run.rounds = _optional_csv(run, "rounds.csv", ROUNDS_COLUMNS, ROUNDS_NUMBERS)
    run.roc = _optional_csv(run, "roc.csv", ROC_COLUMNS, ROC_COLUMNS[1:])
    if run.roc is not None:
        _check_roc(run.roc, directory / "roc.csv")
    run.methods = ordered(list(dict.fromkeys(m for m, _, _ in stats)))
    run.sites = _sites(run)
    return run


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """Every cell as text ("" when empty), so a site called "NA" stays a site."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV file ({_one_line(e)})") from e
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def _numbers(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> pd.DataFrame:
    """The number columns as floats; a cell that is no number is an error."""
    frame = frame.copy()
    for column in columns:
        text = frame[column].str.strip()
        numbers = pd.to_numeric(text.replace("", "nan"), errors="coerce")
        bad = numbers.isna() & ~text.str.lower().isin(["", "nan"])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}: line {row + 2}, column {column}: "
                f"{text.iloc[row]!r} is not a number"
            )
        frame[column] = numbers.astype(float)
    return frame


def _stats(summary: pd.DataFrame, path: Path) -> dict[tuple[str, str, str], Stat]:
    stats: dict[tuple[str, str, str], Stat] = {}
    for row in summary.itertuples(index=False):
        key = (row.method, row.metric, row.site)
        if key in stats:
            raise DataError(f"{path}: the row for {key} appears twice")
        stats[key] = Stat(
            row.value, row.sd, row.ci_low, row.ci_high, row.test_rows, row.positives
        )
    return stats


def _read_meta(path: Path) -> dict:
    """run.json, checked for the types the page relies on; {} when absent."""
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({_one_line(e)})") from e
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(meta).__name__}")
    for key, kind in META_TYPES.items():
        if key in meta and not isinstance(meta[key], kind):
            raise DataError(f"{path}: {key!r} should be a {kind.__name__}")
    if not all(isinstance(v, str) for v in meta.get("legend", {}).values()):
        raise DataError(f"{path}: every 'legend' entry should be a string")
    return meta


def _optional_csv(
    run: Run, name: str, required: tuple[str, ...], numbers: tuple[str, ...]
) -> pd.DataFrame | None:
    path = run.directory / name
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        return None  # a run with nothing to put there may leave it empty
    run.files.append(name)
    return _numbers(_read_csv(path, required), numbers, path)


def _check_roc(roc: pd.DataFrame, path: Path) -> None:
    points = roc[["fpr", "tpr"]].to_numpy()
    if np.isnan(points).any() or (points < 0).any() or (points > 1).any():
        raise DataError(f"{path}: fpr and tpr must be numbers between 0 and 1")
    if roc["seed"].isna().any():
        raise DataError(f"{path}: every row needs a seed")


def ordered(methods: list[str]) -> list[str]:
    """The known methods in the usual order, unknown ones after, as they came."""
    known = [m for m in METHODS if m in methods]
    return known + [m for m in methods if m not in METHODS]


def _sites(run: Run) -> list[str]:
    """Test sites: run.json's, else the data rows', else the per-site rows'."""
    if run.meta.get("sites"):
        return [str(s) for s in run.meta["sites"]]
    kept = run.data.loc[run.data["metric"] == "site_rows", "site"].tolist()
    return kept or list(dict.fromkeys(s for _, _, s in run.stats if s))


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
