"""A user's own table, split by its real site column.

Real multi-site clinical tables are messy, so every cell is cleaned first:
surrounding spaces are stripped (from column names too), the usual missing
markers (blank, NA, N/A, NaN, null, ".", "?", inf, ...) read as missing, and
text columns holding only numbers become numbers. Then rows without a site or
a target are dropped, sites too small to train and test on are left out, and
columns that cannot help (all missing, constant, identifiers) are dropped.
Each change is one line in `FederatedDataset.notices`, so the user sees what
happened to their table; input that cannot be used is one `DataError` line.

What is shared and what stays at a site: column names, which columns to drop
and the union of categorical level names over the table are treated as
shareable metadata (in a real deployment the sites agree on them up front).
So every site one-hot encodes to the same layout, levels in sorted order,
without pooling any rows. Everything computed from values (the medians that
fill missing numbers, the means and standard deviations that scale them)
comes from each site's own train split only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from swarmflower.datasets.base import FederatedDataset, LeftOutSite, SiteData
from swarmflower.datasets.preprocessing import split_rows, standardise
from swarmflower.errors import ConfigError, DataError

TEST_SIZE = 0.3
DEFAULT_MIN_SITE_ROWS = 10
CSV_OPTIONS = ("positive", "min_site_rows")
MISSING_MARKERS = frozenset(
    {"", "na", "n/a", "#n/a", "nan", "null", ".", "?"}
    | {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
)
POSITIVE_WORDS = frozenset(
    {"yes", "y", "true", "t", "positive", "pos", "present", "case", "1", "+"}
    | {"disease", "diseased", "sick", "abnormal", "malignant", "dead", "event"}
)
NEGATIVE_WORDS = frozenset(
    {"no", "n", "false", "f", "negative", "neg", "absent", "control", "0", "-"}
    | {"healthy", "normal", "benign", "alive", "none"}
)
# Name parts that mark an integer column distinct on every row as an identifier.
ID_WORDS = frozenset(
    {"id", "ids", "pid", "sid", "uid", "uuid", "guid", "mrn", "identifier"}
    | {"idx", "index", "key", "no", "nr", "number", "record", "seq"}
)
MISSING_LEVEL = "missing"
# Why a feature column is dropped, and what the notice adds to say so.
USELESS = {
    "all-missing": "",
    "constant": "",
    "identifier-like": " (a distinct value on every row)",
}
SHOWN = 10  # names listed in one notice or error before "and N more"


def check_csv_options(options: dict[str, object]) -> None:
    """Refuse options a csv: task does not take, before any loading.

    A value of None means "not given", so a caller may pass every option.
    """
    unknown = sorted(set(options) - set(CSV_OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown csv option(s) {', '.join(unknown)}: use {', '.join(CSV_OPTIONS)}"
        )
    positive = options.get("positive")
    if positive is not None and not isinstance(positive, str):
        raise ConfigError(f"csv option 'positive' must be text, got {positive!r}")
    rows = options.get("min_site_rows")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int)):
        raise ConfigError(
            f"csv option 'min_site_rows' must be a whole number, got {rows!r}"
        )
    if rows is not None and rows < 1:
        raise ConfigError(f"csv option 'min_site_rows' must be at least 1, got {rows}")


def load_csv_table(
    path: str | Path,
    site_column: str | None,
    target: str | None,
    seed: int = 0,
    positive: str | None = None,
    min_site_rows: int = DEFAULT_MIN_SITE_ROWS,
) -> FederatedDataset:
    """Read PATH, one site per distinct value of `site_column`, binary `target`.

    `positive` names the target class taken as 1 (default: see
    `_default_positive`); sites with fewer than `min_site_rows` rows that
    have a target are left out of the federation and listed in `left_out`.
    """
    check_csv_options({"positive": positive, "min_site_rows": min_site_rows})
    path = Path(path)
    site_column, target = _roles(site_column, target)
    table = _read_table(path)
    _check_roles(table, path, site_column, target)
    table = _clean_table(table, keep_text=site_column)
    notices: list[str] = []
    table = _drop_missing_sites(table, site_column, notices)
    table = _drop_missing_targets(table, site_column, target, notices)
    if table.empty:
        raise DataError(f"{path} has no row with both a site and a target")
    classes = _classes(table[target], target)
    positive_key = _positive_key(classes, positive, target, notices)
    y = (classes.keys == positive_key).to_numpy(dtype=np.float32)
    sites = table[site_column].to_numpy(dtype=object)
    left_out = _small_sites(sites, min_site_rows, notices)
    kept = ~np.isin(sites, [site.name for site in left_out])
    y, by_site = y[kept], _rows_by_site(sites[kept])
    _check_federation(by_site, y, site_column, target, left_out)
    _note_one_class_sites(by_site, y, target, notices)
    features = table.drop(columns=[site_column, target]).loc[kept]
    x, feature_names, numeric = _encode(_usable_features(features, path, notices))
    return FederatedDataset(
        name=f"csv:{path.name}",
        sites=tuple(
            _site_data(name, x[rows], y[rows], numeric, seed)
            for name, rows in by_site.items()
        ),
        feature_names=feature_names,
        notices=tuple(notices),
        left_out=left_out,
        positive_label=classes.labels[positive_key],
    )


# --- reading and cleaning -------------------------------------------------


def _roles(site_column: str | None, target: str | None) -> tuple[str, str]:
    """The two column names as given, stripped like the table's own names."""
    if site_column is None or target is None:
        raise DataError("a csv: task needs --site-column and --target")
    site_column, target = site_column.strip(), target.strip()
    if site_column == target:
        raise DataError("--site-column and --target must be different columns")
    return site_column, target


def _read_table(path: Path) -> pd.DataFrame:
    """Every cell as text, names stripped; nothing is interpreted yet.

    Read as text so that cleaning decides what is missing and what is a
    number, not pandas' defaults (which miss " NA" or "?"). A file that is
    not UTF-8 is read as Latin-1, as spreadsheets often save it.
    """
    if not path.is_file():
        raise DataError(f"table not found: {path}")
    try:
        raw = _read_text_cells(path, "utf-8-sig")
    except UnicodeDecodeError:
        raw = _read_text_cells(path, "latin-1")
    if len(raw) < 2:
        raise DataError(f"{path} has a header but no rows")
    names = _column_names(raw.iloc[0].tolist(), path)
    table = raw.iloc[1:].reset_index(drop=True)
    table.columns = names
    return table


def _read_text_cells(path: Path, encoding: str) -> pd.DataFrame:
    try:
        return pd.read_csv(
            path, header=None, dtype=str, keep_default_na=False, encoding=encoding
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"cannot read {path} as CSV: {reason}") from None


def _column_names(header: list[object], path: Path) -> list[str]:
    """Stripped header names; a blank one is named by its position (column_3)."""
    names = [
        name.strip() if isinstance(name, str) and name.strip() else f"column_{i + 1}"
        for i, name in enumerate(header)
    ]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"column '{name}' appears twice in the header of {path}")
        seen.add(name)
    return names


def _check_roles(
    table: pd.DataFrame, path: Path, site_column: str, target: str
) -> None:
    for role, column in (("site column", site_column), ("target", target)):
        if column not in table.columns:
            raise DataError(
                f"{role} '{column}' is not a column of {path} "
                f"(columns: {_listed(map(str, table.columns))})"
            )
    if table.shape[1] < 3:
        raise DataError(f"{path} has no feature columns besides site and target")


def _clean_table(table: pd.DataFrame, keep_text: str) -> pd.DataFrame:
    """Every column cleaned; all but `keep_text` (the site names) may become numbers."""
    return pd.DataFrame(
        {name: _clean_column(table[name], name != keep_text) for name in table},
        index=table.index,
    )


def _clean_column(column: pd.Series, may_be_numeric: bool) -> pd.Series:
    """Spaces stripped and missing markers missing; numbers if all values are.

    Numbers spelled as whole numbers ("12", not "12.0") become pandas' Int64,
    so that an identifier can be told from a measurement later.
    """
    text = column.str.strip()
    text = text.mask(text.str.casefold().isin(MISSING_MARKERS))
    if not may_be_numeric:
        return text
    numbers = pd.to_numeric(text, errors="coerce")
    present = text.notna()
    if numbers[present].isna().any():
        return text
    numbers = numbers.astype(np.float64)
    numbers = numbers.where(np.isfinite(numbers))  # 1e999 parses as inf
    whole = text[present].str.fullmatch(r"[+-]?\d+").all()
    if whole and numbers.abs().max() < 2**53:  # exact as float64, so as Int64
        return numbers.astype("Int64")
    return numbers


def _drop_missing_sites(
    table: pd.DataFrame, site_column: str, notices: list[str]
) -> pd.DataFrame:
    missing = table[site_column].isna()
    if missing.any():
        notices.append(
            f"dropped {int(missing.sum())} row(s) with no value in site column "
            f"'{site_column}'"
        )
    return table[~missing]


def _drop_missing_targets(
    table: pd.DataFrame, site_column: str, target: str, notices: list[str]
) -> pd.DataFrame:
    missing = table[target].isna()
    if missing.any():
        counts = table.loc[missing, site_column].value_counts()
        notices.append(
            f"dropped {int(missing.sum())} row(s) with a missing target: "
            f"{_per_site(counts.to_dict())}"
        )
    return table[~missing]


# --- the target -------------------------------------------------------------


@dataclass(frozen=True)
class _Classes:
    """The target's classes: a key per row, and how each class is shown.

    Keys are numbers for a numeric target (so "1" and "1.0" are one class)
    and case-folded text otherwise (so "Yes" and "yes" are one class).
    """

    keys: pd.Series
    labels: dict[object, str]

    @property
    def ordered(self) -> list[object]:
        return sorted(self.labels)

    def shown(self) -> str:
        """The classes in sorted order, quoted; five at most (a continuous
        column given as target would otherwise list every value)."""
        return _listed((f"'{self.labels[key]}'" for key in self.ordered), limit=5)


def _classes(values: pd.Series, target: str) -> _Classes:
    """Exactly two classes in any spelling, or one line naming those found."""
    if pd.api.types.is_numeric_dtype(values):
        keys = values.astype(np.float64)
        labels = {key: _number_label(key) for key in keys.unique()}
    else:
        keys = values.str.casefold()
        labels = _spellings(values, keys)
    classes = _Classes(keys=keys, labels=labels)
    if len(labels) != 2:
        raise DataError(
            f"target column '{target}' must hold exactly 2 classes, found "
            f"{len(labels)}: {classes.shown()} (--positive picks which of two "
            f"classes is positive; recode the column to two classes)"
        )
    return classes


def _number_label(value: float) -> str:
    """1.0 is shown as '1', as the user most likely wrote it."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _spellings(values: pd.Series, keys: pd.Series) -> dict[object, str]:
    """Each class shown as its most common spelling (ties: the first sorted)."""
    counts = pd.DataFrame({"key": keys, "text": values}).value_counts()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0][1]))
    labels: dict[object, str] = {}
    for (key, text), _ in ranked:
        labels.setdefault(key, text)
    return labels


def _positive_key(
    classes: _Classes, option: str | None, target: str, notices: list[str]
) -> object:
    """The class taken as 1: `option` if given, else `_default_positive`."""
    if option is None:
        key = _default_positive(classes)
        how = "; choose with --positive"
    else:
        key = _matching_class(classes, option, target)
        how = ", as chosen with --positive"
    notices.append(
        f"positive class: '{classes.labels[key]}' (of {classes.shown()}){how}"
    )
    return key


def _default_positive(classes: _Classes) -> object:
    """A known positive word (yes, true, case, 1, ...), else the class opposite
    a known negative word (no, control, ...), else the larger number, else
    the last class in sorted order."""
    ordered = classes.ordered
    word = {key: classes.labels[key].casefold() for key in ordered}
    positive = [key for key in ordered if word[key] in POSITIVE_WORDS]
    if len(positive) == 1:
        return positive[0]
    negative = [key for key in ordered if word[key] in NEGATIVE_WORDS]
    if len(negative) == 1:
        return ordered[1 - ordered.index(negative[0])]
    return ordered[-1]


def _matching_class(classes: _Classes, option: str, target: str) -> object:
    """The class `option` names, ignoring case and spaces (and "1.0" is 1)."""
    wanted = option.strip().casefold()
    for key in classes.ordered:
        if classes.labels[key].casefold() == wanted or _same_number(key, wanted):
            return key
    raise DataError(
        f"--positive '{option}' is not a class of target '{target}': "
        f"use one of {classes.shown()}"
    )


def _same_number(key: object, text: str) -> bool:
    try:
        return isinstance(key, float) and float(text) == key
    except ValueError:
        return False


# --- sites --------------------------------------------------------------------


def _small_sites(
    sites: np.ndarray, min_rows: int, notices: list[str]
) -> tuple[LeftOutSite, ...]:
    """Sites with fewer than `min_rows` rows: too few to train and test on."""
    names, counts = np.unique(sites.astype(str), return_counts=True)
    reason = f"fewer than {min_rows} rows (--min-site-rows)"
    small = tuple(
        LeftOutSite(name=str(name), rows=int(count), reason=reason)
        for name, count in zip(names, counts, strict=True)
        if count < min_rows
    )
    if small:
        listed = _per_site({site.name: site.rows for site in small})
        notices.append(
            f"left out {len(small)} site(s) with fewer than {min_rows} rows "
            f"(--min-site-rows): {listed}"
        )
    return small


def _rows_by_site(sites: np.ndarray) -> dict[str, np.ndarray]:
    """Each site's row indices in file order, sites sorted by name.

    One pass over the rows, so a table with thousands of sites stays fast.
    """
    if len(sites) == 0:
        return {}
    names, inverse = np.unique(sites.astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse))[:-1]
    return dict(zip(names.tolist(), np.split(order, bounds), strict=True))


def _check_federation(
    by_site: dict[str, np.ndarray],
    y: np.ndarray,
    site_column: str,
    target: str,
    left_out: tuple[LeftOutSite, ...],
) -> None:
    """At least two sites, and some site that holds both classes."""
    dropped = ""
    if left_out:
        listed = _per_site({site.name: site.rows for site in left_out})
        dropped = f" ({len(left_out)} left out, {left_out[0].reason}: {listed})"
    if len(by_site) < 2:
        if not left_out:
            raise DataError(f"site column '{site_column}' names one site only")
        raise DataError(
            f"only {len(by_site)} site(s) of '{site_column}' remain{dropped}; "
            f"a swarm needs at least 2: lower --min-site-rows"
        )
    if not any(np.unique(y[rows]).size == 2 for rows in by_site.values()):
        raise DataError(
            f"no site holds both classes of target '{target}': each of the "
            f"{len(by_site)} site(s) kept holds one class only{dropped}"
        )


def _note_one_class_sites(
    by_site: dict[str, np.ndarray], y: np.ndarray, target: str, notices: list[str]
) -> None:
    names = [name for name, rows in by_site.items() if np.unique(y[rows]).size < 2]
    if names:
        notices.append(
            f"{len(names)} site(s) hold one class of '{target}' only (they still "
            f"train): {_listed(names)}"
        )


# --- features -----------------------------------------------------------------


def _usable_features(
    features: pd.DataFrame, path: Path, notices: list[str]
) -> pd.DataFrame:
    """Drop all-missing, constant and identifier-like columns, with a notice each.

    Decided on the whole table: which columns exist is shareable metadata.
    """
    dropped: dict[str, list[str]] = {why: [] for why in USELESS}
    for name in features.columns:
        why = _why_useless(name, features[name])
        if why is not None:
            dropped[why].append(name)
    for why, names in dropped.items():
        if names:
            notices.append(f"dropped {why} column(s){USELESS[why]}: {_listed(names)}")
    gone = [name for names in dropped.values() for name in names]
    if len(gone) == features.shape[1]:
        raise DataError(
            f"{path} has no usable feature column: all are missing, constant or "
            f"identifiers ({_listed(gone)})"
        )
    return features.drop(columns=gone)


def _why_useless(name: str, column: pd.Series) -> str | None:
    """Why a column cannot help the model, or None.

    A numeric column with one value is constant once its blanks are filled
    with the median; a text column with one value and blanks still tells
    present from missing, so it stays.
    """
    present = column.dropna()
    numeric = pd.api.types.is_numeric_dtype(column)
    if present.empty:
        return "all-missing"
    if present.nunique() == 1 and (numeric or len(present) == len(column)):
        return "constant"
    if _looks_like_id(name, column, numeric):
        return "identifier-like"
    return None


def _looks_like_id(name: str, column: pd.Series, numeric: bool) -> bool:
    """Distinct on every row: text always; whole numbers only if named like an
    id or consecutive; never a float measurement, which may well be distinct."""
    if column.isna().any() or column.nunique() < len(column):
        return False
    if not numeric:
        return True
    if not pd.api.types.is_integer_dtype(column):
        return False
    values = column.to_numpy(dtype=np.float64)
    consecutive = bool(np.all(np.diff(np.sort(values)) == 1))
    return consecutive or _named_like_id(name)


def _named_like_id(name: str) -> bool:
    """'patient_id', 'PatientID', 'record no', 'MRN': a name part is an id word."""
    spaced = "".join(
        f" {char}" if char.isupper() and i and name[i - 1].islower() else char
        for i, char in enumerate(name)
    )
    parts = "".join(char if char.isalnum() else " " for char in spaced).lower()
    return any(part in ID_WORDS for part in parts.split())


def _encode(features: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...], int]:
    """Numbers first (missing kept, for each site to fill after its split), then
    one-hot text columns over the union of their levels in sorted order.

    Returns the matrix, its column names and how many leading columns are
    numeric (those are imputed and standardised per site).
    """
    numeric = [n for n in features if pd.api.types.is_numeric_dtype(features[n])]
    blocks = [features[numeric].astype(np.float64).to_numpy()]
    names = list(numeric)
    for name in features:
        if name not in numeric:
            block, levels = _one_hot(features[name])
            blocks.append(block)
            names.extend(f"{name}_{level}" for level in levels)
    return np.hstack(blocks), tuple(names), len(numeric)


def _one_hot(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Indicator columns for the sorted levels, plus 'missing' if any is."""
    levels = sorted(set(column.dropna()))
    if column.isna().any() and MISSING_LEVEL not in levels:
        levels.append(MISSING_LEVEL)
    values = column.fillna(MISSING_LEVEL).to_numpy(dtype=object)
    block = values[:, None] == np.array(levels, dtype=object)[None, :]
    return block.astype(np.float64), levels


# --- one site -----------------------------------------------------------------


def _site_data(
    name: str, x: np.ndarray, y: np.ndarray, numeric: int, seed: int
) -> SiteData:
    """Split, fill missing numbers from the train split, then standardise them."""
    try:
        x_train, x_test, y_train, y_test = split_rows(
            name, x, y, test_size=TEST_SIZE, seed=seed
        )
    except DataError as exc:
        raise DataError(f"{exc} (raise --min-site-rows)") from None
    x_train, x_test = _impute(x_train, x_test, numeric)
    with np.errstate(over="ignore", invalid="ignore"):
        site = standardise(
            name, (x_train, y_train), (x_test, y_test), scale_columns=np.arange(numeric)
        )
    if not (np.isfinite(site.x_train).all() and np.isfinite(site.x_test).all()):
        raise DataError(f"site '{name}' has numbers too large to standardise")
    return site


def _impute(
    x_train: np.ndarray, x_test: np.ndarray, numeric: int
) -> tuple[np.ndarray, np.ndarray]:
    """Missing numbers become the median of the site's own train split.

    A column with no value in this site's train split (but some elsewhere)
    has no local statistic: it becomes 0 in both splits, the neutral value
    once standardised.
    """
    train, test = x_train.copy(), x_test.copy()
    seen = ~np.isnan(train[:, :numeric]).all(axis=0)
    medians = np.zeros(numeric)
    if seen.any():
        medians[seen] = np.nanmedian(train[:, :numeric][:, seen], axis=0)
    for part in (train, test):
        block = part[:, :numeric]  # a view: filling it fills `part`
        rows, columns = np.nonzero(np.isnan(block))
        block[rows, columns] = medians[columns]
        block[:, ~seen] = 0.0
    return train, test


# --- wording ------------------------------------------------------------------


def _listed(items: Iterable[str], limit: int = SHOWN) -> str:
    """Comma-separated, at most `limit` items, then 'and N more'."""
    items = list(items)
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", and {len(items) - limit} more"
    return shown


def _per_site(counts: dict[object, int]) -> str:
    """'cleveland 4, va 5': counts by site name, sorted by name."""
    return _listed(f"{name} {int(counts[name])}" for name in sorted(counts, key=str))
