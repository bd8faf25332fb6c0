"""A real site's progress lines: never silent while it waits for the swarm."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from swarmflower import site_runtime
from swarmflower.site_actions import PeerLog
from swarmflower.site_events import SiteEvents


def waiting_site(join: object | None) -> SimpleNamespace:
    """What `_report_progress` reads of a peer that adopts nothing."""
    return SimpleNamespace(
        identity=SimpleNamespace(name="clinic-d"),
        log=PeerLog(),
        core=SimpleNamespace(join=join, done=False),
        config=SimpleNamespace(round_timeout=0.05, rounds=5),
        transport=SimpleNamespace(link_changes=[]),
    )


def lines_while_stuck(peer, tmp_path, monkeypatch, seconds: float) -> list[str]:
    monkeypatch.setattr(site_runtime, "QUIET_S", 0.4)
    said: list[str] = []
    stop = threading.Event()
    events = SiteEvents(tmp_path / "events.jsonl", "clinic-d")
    watcher = threading.Thread(
        target=site_runtime._report_progress, args=(peer, stop, said.append, events)
    )
    watcher.start()
    time.sleep(seconds)
    stop.set()
    watcher.join(timeout=5)
    return said


def test_a_newcomer_no_member_answers_says_so_every_while(tmp_path, monkeypatch):
    said = lines_while_stuck(waiting_site(join=object()), tmp_path, monkeypatch, 1.1)
    assert 2 <= len(said) <= 4  # once per quiet spell, not once per poll
    assert all("clinic-d: not enrolled yet after" in line for line in said)
    waited = [float(line.split("after ")[1].split(" s")[0]) for line in said]
    assert waited == sorted(waited)  # counted from the start, not from the last line
    assert "asking the members to join" in said[0]


def test_a_member_with_no_new_round_says_it_waits(tmp_path, monkeypatch):
    said = lines_while_stuck(waiting_site(join=None), tmp_path, monkeypatch, 0.5)
    assert said and said[0].startswith("clinic-d: no round adopted for")
