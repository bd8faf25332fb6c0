"""Sites whose updates look poisoned, from a swarm's rounds.

A robust merge says whom it clipped or left out each round (`held_back`);
every merge's verifiers also measure each update's distance to the merged
model (`distances`). A site held back, or far from the merge (more than
`FAR_FACTOR` times the round's median distance), in most of the rounds it
contributed to is flagged at the end of a run: a reason to look at that
site, not a verdict (a hospital with unusual patients can be far too).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import median

import pandas as pd

FAR_FACTOR = 3.0  # distance to the merge, in medians of the round, that is far
MIN_FOR_FAR = 3  # updates a round needs before anyone can be far


@dataclass(frozen=True)
class Suspect:
    site: str
    rounds: int  # rounds whose merge took its update
    held_back: int  # of them, rounds the merge clipped it or left it out
    far: int  # of them, rounds it was far from the merged model

    def why(self) -> str:
        said = []
        if self.held_back:
            said.append(f"clipped or left out in {self.held_back}")
        if self.far:
            said.append(f"far from the merged model in {self.far}")
        return f"{self.site}: {' and '.join(said)} of its {self.rounds} rounds"


def per_site(text: object) -> dict[str, float]:
    """`site=value;...` (a rounds.csv cell) as a dict; empty for nothing."""
    if not isinstance(text, str) or not text:
        return {}
    pairs = (item.rpartition("=") for item in text.split(";") if item)
    return {site: float(value) for site, _, value in pairs}


def names(text: object) -> list[str]:
    """`a;b` (a rounds.csv cell) as a list; empty for nothing."""
    return [n for n in text.split(";") if n] if isinstance(text, str) else []


def suspects(rounds: pd.DataFrame) -> list[Suspect]:
    """The flagged sites of one swarm run (rows of one method and seed with
    `distances` and `held_back` columns), in the order they first merged."""
    if "distances" not in rounds:
        return []
    merged: Counter[str] = Counter()
    held: Counter[str] = Counter()
    far: Counter[str] = Counter()
    for row in rounds.itertuples():
        distances = per_site(row.distances)
        merged.update(distances.keys())
        held.update(set(names(getattr(row, "held_back", ""))) & distances.keys())
        far.update(_far(distances.items()))
    return [
        Suspect(site, merged[site], held[site], far[site])
        for site in merged
        if max(held[site], far[site]) * 2 > merged[site]
    ]


def _far(distances: Iterable[tuple[str, float]]) -> list[str]:
    values = dict(distances)
    if len(values) < MIN_FOR_FAR:
        return []
    middle = median(values.values())
    return [site for site, d in values.items() if d > FAR_FACTOR * middle > 0]
