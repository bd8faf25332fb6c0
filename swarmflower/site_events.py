"""A real site's story, as it happens: `SITE/events.jsonl`, one JSON object a line.

What the site's core records in its `PeerLog` (trainings, seals, adoptions,
fork switches, refused blocks and updates, app failures, rounds it waited
on) is followed while the site runs and appended with the wall-clock time,
so an operator (or a script) can tell afterwards what happened when, and
why a round went as it did. Each line has `t` (Unix seconds), `site`,
`event`, and the event's own fields.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from swarmflower.site_actions import PeerLog

EVENTS_FILE = "events.jsonl"


def _hex(digest: bytes) -> str:
    return "0x" + digest.hex()


# PeerLog list -> (event name, its fields from one entry)
_LISTS: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "elected": ("elected", lambda e: {"round": e[0], "rank": e[1]}),  # 0: leads
    "trained": ("trained", lambda r: {"round": r}),
    "failed": ("app_failed", lambda e: {"round": e[0], "error": str(e[1])}),
    "sealed": (
        "sealed",
        lambda e: {"round": e[0], "view": e[1], "reason": e[2].name.lower()},
    ),
    "adopted": (
        "adopted",
        lambda a: {
            "round": a.round,
            "block": _hex(a.block_hash),
            "model": _hex(a.model_hash),
            "recomputed": a.recomputed,
        },
    ),
    "refused": (
        "block_refused",
        lambda e: {"round": e[0], "block": _hex(e[1]), "why": e[2]},
    ),
    "refused_updates": (
        "update_refused",
        lambda e: {"round": e[0], "site": e[1] + 1, "why": e[2]},
    ),
    "switched": ("fork_switched", lambda line: {"line": line}),
    "membership": (
        "membership",
        lambda e: {"round": e[0], "change": e[1], "member": e[2]},
    ),
}


class SiteEvents:
    """Appends the new entries of a site's `PeerLog` to its events file."""

    def __init__(self, path: Path, site: str) -> None:
        self.path, self.site = path, site
        self._seen: dict[str, int] = dict.fromkeys(_LISTS, 0)
        self._waited: set[int] = set()
        self._links_seen = 0

    def write(self, event: str, **fields: Any) -> None:
        self._append([(event, fields)])

    def follow(self, log: PeerLog) -> None:
        """Write what `log` gained since the last call (the log's lists only
        grow; the peer's thread appends while this one reads)."""
        new: list[tuple[str, dict[str, Any]]] = []
        for name, (event, fields) in _LISTS.items():
            entries = getattr(log, name)
            end = len(entries)
            new += [(event, fields(e)) for e in entries[self._seen[name] : end]]
            self._seen[name] = end
        for round, missing in list(log.waiting.items()):
            if round not in self._waited:
                self._waited.add(round)
                new.append(("waiting", {"round": round, "missing": list(missing)}))
        self._append(new)

    def follow_links(self, changes: list[tuple[float, str, bool]]) -> None:
        """Write the transport's new link changes: a peer that stopped
        answering (`disconnected`) or answers again (`reconnected`)."""
        end = len(changes)
        self._append(
            ("reconnected" if up else "disconnected", {"peer": peer, "at": round(t, 3)})
            for t, peer, up in changes[self._links_seen : end]
        )
        self._links_seen = end

    def _append(self, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        lines = [
            json.dumps({"t": round(time.time(), 3), "site": self.site, "event": e, **f})
            for e, f in events
        ]
        if lines:
            with self.path.open("a") as handle:
                handle.write("\n".join(lines) + "\n")
