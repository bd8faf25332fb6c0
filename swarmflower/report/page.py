"""The HTML of `report.html`: styles, tables and sections, written to disk."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

import pandas as pd

from swarmflower.report.figures import curves_figure, roc_figure
from swarmflower.report.run_files import Run, Stat, load_run
from swarmflower.suspects import suspects

SHOWN_SITES = 12  # per-site tables show this many weakest and strongest sites
AUDIT_COLUMNS = {
    "attackers": "attacking sites (--attack) whose signed updates were merged",
    "held_back": "sites whose updates the merge clipped or left out",
}
SHOWN_ROUNDS = 30  # the swarm's rounds table: this many first and last rounds
ONE_CLASS = "one class in this test set"

# (metric, column label, tooltip explaining it to a clinician)
HEADLINE = (
    ("accuracy", "accuracy", "Mean of the per-site test accuracies (FLamby's metric)"),
    ("balanced_accuracy", "balanced accuracy", "Mean of sensitivity and specificity"),
    ("auc", "AUC", "Area under the ROC curve, mean over the test sites"),
    ("global_auc", "global AUC", "AUC on all sites' test rows together"),
    ("sensitivity", "sensitivity", "Share of cases found, mean over the test sites"),
    ("specificity", "specificity", "Share of controls cleared, mean over the sites"),
    ("wall_s", "wall time", "Seconds the method took to train"),
)
PER_SITE = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("auc", "AUC"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
)
UNION = tuple(
    (f"global_{name}", label, "On all sites' test rows together")
    for name, label in PER_SITE
)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;
margin:0;background:#fff;line-height:1.45}
main{max-width:1150px;margin:0 auto;padding:1.2em 1.5em}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin-top:1.6em;
border-bottom:1px solid #ccc}h3{font-size:1.05em;margin:1.2em 0 .3em}
table{border-collapse:collapse;margin:.4em 0 .8em;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;vertical-align:top}
th{background:#f0f0f0;text-align:left}td.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}
.ci{color:#666;font-size:.85em}.note{color:#555}.na{color:#888}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}
.figures{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;flex:1 1 480px}figure img{width:100%;max-width:620px}
figcaption{font-size:.88em;color:#444;max-width:620px}
footer{margin-top:2em;font-size:.85em;color:#666;border-top:1px solid #ccc}
"""


def write_report(directory: Path) -> Path:
    """Write `directory/report.html` from the run's result files; return its path."""
    directory = Path(directory)
    page = render_page(load_run(directory))
    path = directory / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


# ---- formatting ----


def _stat_html(stat: Stat | None, digits: int = 3, unit: str = "", ci=True) -> str:
    """`mean ± sd` (and the 95% interval) over several seeds, else the value."""
    if stat is None or math.isnan(stat.value):
        return ""
    text = f"{stat.value:.{digits}f}"
    if not math.isnan(stat.sd):
        text += f" ± {stat.sd:.{digits}f}"
    text += unit
    if ci and not (math.isnan(stat.low) or math.isnan(stat.high)):
        interval = f"{stat.low:.{digits}f}–{stat.high:.{digits}f}"
        text += f'<br><span class="ci">95% CI {interval}</span>'
    return text


def _td(html: str, title: str = "not reported") -> str:
    """A number cell; an empty one reads "n/a" and says why on hover."""
    if not html:
        return f'<td class="num na" title="{escape(title)}">n/a</td>'
    return f'<td class="num">{html}</td>'


def _text_td(text: object) -> str:
    return f"<td>{escape(str(text))}</td>"


def _table(headers: list[tuple[str, str]], rows: list[str]) -> str:
    """`headers` are (label, tooltip) pairs; `rows` are ready `<tr>` strings."""
    head = "".join(
        f'<th title="{escape(tip)}">{escape(label)}</th>'
        if tip
        else f"<th>{escape(label)}</th>"
        for label, tip in headers
    )
    body = "".join(rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _count(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.0f}"


def _whole(text: str) -> str:
    """A count as written ("3" or "3.0") shown as "3"; other text escaped."""
    try:
        return f"{float(text):.0f}" if float(text).is_integer() else escape(text)
    except ValueError:
        return escape(text)


def _names(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(escape(n) for n in names[:limit])
    more = len(names) - limit
    return shown + (f" and {more} more (all in summary.csv)" if more > 0 else "")


def _note(text: str) -> str:
    """A grey sentence; `text` is ready HTML."""
    return f"<p class='note'>{text}</p>"


# ---- the page ----


def render_page(run: Run) -> str:
    """The whole page as one string."""
    title = escape(run.meta.get("title") or f"swarmflower run {run.directory.name}")
    sections = (
        _facts_section,
        _headline_section,
        _plots_section,
        _left_out_section,
        _sites_section,
        _swarm_rounds_section,
        _footer,
    )
    body = "".join(section(run) for section in sections)
    policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{CSS}</style></head>"
        f"<body><main><h1>{title}</h1>{body}</main></body></html>\n"
    )


def _seeds(run: Run) -> list[int]:
    if run.meta.get("seeds"):
        return [int(s) for s in run.meta["seeds"]]
    for frame in (run.rounds, run.roc):
        if frame is not None and len(frame):
            return sorted(int(s) for s in frame["seed"].dropna().unique())
    return []


def _facts_section(run: Run) -> str:
    rounds = run.meta.get("rounds")
    if rounds is None and run.rounds is not None and len(run.rounds):
        rounds = int(run.rounds["round"].max())
    seeds = _seeds(run)
    facts = [
        ("task", escape(str(run.meta.get("task", "not recorded (no run.json)")))),
        ("rounds", "not recorded" if rounds is None else str(rounds)),
        ("seeds", f"{len(seeds)} ({', '.join(map(str, seeds))})" if seeds else "—"),
        ("sites", f"{len(run.sites)}: {_names(run.sites)}"),
        ("methods", _names(run.methods)),
    ]
    if "strategy" in run.meta:
        merge = str(run.meta["strategy"])
        if run.meta.get("bucketing"):
            merge += f" over buckets of {run.meta['bucketing']}"
        facts.append(("swarm merge", escape(merge)))
    if "attack" in run.meta:
        who = _names([str(s) for s in run.meta.get("attackers", [])])
        facts.append(("attack", f"{escape(str(run.meta['attack']))} by {who}"))
    facts += [("positive class", escape(p)) for p in _data_notes(run, "positive_class")]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    return f'<dl class="facts">{items}</dl>'


def _metric_table(run: Run, metrics: tuple[tuple[str, str, str], ...]) -> str:
    """One row per method, one column per metric."""
    rows = []
    for method in run.methods:
        cells = [f'<th scope="row">{escape(method)}</th>']
        for metric, _, _ in metrics:
            digits, unit = (1, " s") if metric == "wall_s" else (3, "")
            cells.append(_td(_stat_html(run.stat(method, metric), digits, unit)))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return _table([("method", "")] + [(lab, tip) for _, lab, tip in metrics], rows)


def _spread(run: Run) -> bool:
    """Whether any figure varies over seeds (so the page explains ±)."""
    return any(not math.isnan(s.sd) for s in run.stats.values())


def _headline_section(run: Run) -> str:
    how = "Each figure is the mean over seeds ± its standard deviation, "
    how = how + "with the 95% confidence interval below it. " if _spread(run) else ""
    legend = run.meta.get("legend", {})
    lines = "".join(
        f"<li><b>{escape(m)}</b>: {escape(legend[m])}</li>"
        for m in run.methods
        if m in legend
    )
    no_legend = _note("No method descriptions: run.json is unavailable.")
    html = (
        "<h2>Results</h2>"
        + _note(
            "Per-site figures are means over the test sites, each scored on its "
            f"own test set. {how}Hover over a column name for its meaning."
        )
        + _metric_table(run, HEADLINE)
        + (f"<ul class='legend'>{lines}</ul>" if lines else no_legend)
    )
    if any(run.stat(m, "global_accuracy") for m in run.methods):
        html += (
            "<h3>On all sites' test rows together</h3>"
            + _note(
                "Each model scored on the union of the sites' test sets, so a "
                "small site's few rows cannot flatter it."
            )
            + _metric_table(run, UNION)
        )
    return html


def _plots_section(run: Run) -> str:
    colours = {m: f"C{i % 10}" for i, m in enumerate(run.methods)}
    if run.rounds is not None and len(run.rounds):
        curves = curves_figure(run, colours)
    else:
        curves = _note("Learning curves are unavailable: no rounds in rounds.csv.")
    if run.roc is not None and len(run.roc):
        roc = roc_figure(run, colours)
    else:
        roc = _note("ROC curves are unavailable: no points in roc.csv.")
    return f"<h2>Curves</h2><div class='figures'>{curves}{roc}</div>"


def _data_notes(run: Run, metric: str) -> list[str]:
    return run.data.loc[run.data["metric"] == metric, "note"].tolist()


def _left_out_section(run: Run) -> str:
    html = "<h2>Left out and why</h2>"
    if run.data.empty:
        return html + _note("Unavailable: summary.csv has no data rows.")
    out = run.data[run.data["metric"] == "left_out_rows"]
    if out.empty:
        html += f"<p>No site was left out: all {len(run.sites)} sites took part.</p>"
    else:
        rows = [
            f"<tr>{_text_td(r.site)}{_td(_count(r.value))}{_text_td(r.note)}</tr>"
            for r in out.itertuples()
        ]
        html += _table([("site", ""), ("rows", ""), ("reason", "")], rows)
    notices = "".join(f"<li>{escape(n)}</li>" for n in _data_notes(run, "notice"))
    html += f"<ul>{notices}</ul>" if notices else ""
    for positive in _data_notes(run, "positive_class"):
        html += (
            "<p>The positive class (a case, for sensitivity and AUC) is "
            f"<b>{escape(positive)}</b>.</p>"
        )
    return html


def _sort_key(stat: Stat | None) -> float:
    return -math.inf if stat is None or math.isnan(stat.value) else stat.value


def _shown_sites(run: Run, method: str) -> tuple[list[str], str]:
    """All sites, or the weakest and strongest by accuracy ("" marks the gap)."""
    sites = [s for s in run.sites if run.stat(method, "accuracy", s)]
    if len(sites) <= 2 * SHOWN_SITES:
        return sites, ""
    ranked = sorted(sites, key=lambda s: _sort_key(run.stat(method, "accuracy", s)))
    note = (
        f"The {SHOWN_SITES} weakest and {SHOWN_SITES} strongest of {len(sites)} "
        "sites by accuracy; every site is in summary.csv."
    )
    return ranked[:SHOWN_SITES] + [""] + ranked[-SHOWN_SITES:], note


def _site_row(run: Run, method: str, site: str, own_global: bool) -> str:
    if not site:
        return f"<tr><td colspan='{8 + own_global}' class='note'>…</td></tr>"
    support = run.stat(method, "accuracy", site) or Stat(math.nan)
    cells = [_text_td(site), _td(_count(support.test_rows))]
    cells.append(_td(_count(support.positives)))
    for metric, _ in PER_SITE:
        tip = ONE_CLASS if metric == "auc" else "not reported"
        cells.append(_td(_stat_html(run.stat(method, metric, site), ci=False), tip))
    if own_global:
        cells.append(_td(_stat_html(run.stat(method, "global_auc", site), ci=False)))
    return f"<tr>{''.join(cells)}</tr>"


def _method_sites_table(run: Run, method: str) -> str:
    sites, note = _shown_sites(run, method)
    if not sites:
        return ""
    own_global = any(run.stat(method, "global_auc", s) for s in run.sites)
    headers = [("site", ""), ("test rows", ""), ("positives", "cases in the test rows")]
    headers += [(label, "") for _, label in PER_SITE]
    if own_global:
        headers.append(("global AUC", "this site's model on all sites' test rows"))
    weakest = run.stat(method, "global_auc_weakest")
    if weakest and not math.isnan(weakest.value):
        auc = _stat_html(weakest, ci=False)
        note += f" The weakest site's model scores AUC {auc} on all test rows."
    rows = [_site_row(run, method, s, own_global) for s in sites]
    note = _note(note.strip()) if note else ""
    return f"<h3>{escape(method)}</h3>{note}{_table(headers, rows)}"


def _sites_section(run: Run) -> str:
    tables = "".join(_method_sites_table(run, m) for m in run.methods)
    if not tables:
        return "<h2>Per site</h2>" + _note("Unavailable: no per-site rows.")
    return (
        "<h2>Per site</h2>"
        + _note(
            "Each site's own test set"
            + ("; ± is the standard deviation over seeds" if _spread(run) else "")
            + f". n/a under AUC: {ONE_CLASS}."
        )
        + tables
    )


def _swarm_facts(run: Run) -> str:
    """The swarm's own figures over all seeds: who led, what crashed."""
    text = ""
    for metric, what in (
        ("distinct_leaders", "distinct leaders"),
        ("crashes", "crashes"),
    ):
        stat = run.stat("swarm", metric)
        if stat and not math.isnan(stat.value):
            text += f" {what.capitalize()} per run: {_stat_html(stat, 1, ci=False)}."
    return text


def _swarm_rounds_section(run: Run) -> str:
    if run.rounds is None or not (run.rounds["method"] == "swarm").any():
        return ""
    swarm = run.rounds[run.rounds["method"] == "swarm"]
    seed = int(swarm["seed"].min())
    swarm = swarm[swarm["seed"] == seed].sort_values("round")
    note = f"Seed {seed} only (the first seed).{_swarm_facts(run)}"
    if len(swarm) > 2 * SHOWN_ROUNDS:
        note += f" The first and last {SHOWN_ROUNDS} of {len(swarm)} rounds "
        note += "(all are in rounds.csv)."
        swarm = pd.concat([swarm.head(SHOWN_ROUNDS), swarm.tail(SHOWN_ROUNDS)])
    flagged = suspects(swarm)
    if flagged:
        note += " Flagged: " + "; ".join(s.why() for s in flagged) + "."
    extra = [c for c in AUDIT_COLUMNS if c in swarm and swarm[c].notna().any()]
    rows = [
        f"<tr>{_td(_count(r.round))}{_text_td(r.leader)}{_td(_whole(r.view))}"
        f"{_text_td(r.reason)}{_td(_whole(r.contributors))}"
        + "".join(_text_td(_blank(getattr(r, c))) for c in extra)
        + f"{_td(_stat_html(Stat(r.accuracy)))}</tr>"
        for r in swarm.itertuples()
    ]
    headers = [
        ("round", ""),
        ("leader", "the site that merged this round"),
        ("view", "election view: above 0 when a leader had to be replaced"),
        ("reason", "why this site led"),
        ("contributors", "sites whose updates were merged"),
        *[(c.replace("_", " "), AUDIT_COLUMNS[c]) for c in extra],
        ("accuracy", "mean per-site test accuracy after the round"),
    ]
    return f"<h2>Swarm rounds</h2>{_note(note)}{_table(headers, rows)}"


def _blank(value: object) -> str:
    """A rounds.csv text cell; empty where pandas read nothing."""
    return value if isinstance(value, str) else ""


def _footer(run: Run) -> str:
    files = ", ".join(run.files + (["run.json"] if run.meta else []))
    folder = escape(run.directory.resolve().name)
    return (
        f"<footer><p>Built by <code>swarmflower report</code> from {escape(files)} "
        f"in the folder {folder}.</p></footer>"
    )
