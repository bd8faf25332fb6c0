"""The field run: real sites on separate hosts through a bad day's network.

Six hosts, one Linux network namespace each (needs root; addresses in the
tests' private range 10.213.7.0/24 only, every namespace removed at the
end), one `swarmflower peer` per host over mutual TLS. Five founding sites
train breast-cancer for 20 rounds; during the run:

- after round 2, a sixth site is enrolled with `enroll --outbound-only` and
  started: it listens nowhere and dials sites 1 and 2, its relays;
- in round 5, site 4's link is cut both ways for 60 s (the round timeout
  is 10 s);
- in round 10, the leader's link is cut both ways for 20 s, as soon as its
  events say it leads the round;
- after round 12, site 3 leaves with `swarmflower leave`;
- in round 15, the leader SIGKILLs itself before sealing (`leader-crash`),
  and is started again a second later.

Hospital rounds take minutes; to keep the run short and still have a 60 s
outage span many rounds, every site holds each update back 5 s (the
`straggler` drill), so a round takes about 5 s. Printed: one line per
round (its length, leader, view, how many merged), then every check of the
acceptance run, and how long rounds 10 and 15 took against the round
timeout (a backup of view V seals V round timeouts after the round began)
and HPE Swarm Learning's default leader-failure timeout.

    sudo python benchmarks/field_run.py [--rounds 20] [--pace 5] [--timeout 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cli_helpers import run_cli  # noqa: E402
from netns import Lan  # noqa: E402
from real_sites import Watched, outcome  # noqa: E402

from swarmflower.ledger import Ledger  # noqa: E402
from swarmflower.pki import load_eth_key  # noqa: E402
from swarmflower.site_config import load_site_config, write_site_config  # noqa: E402

FOUNDERS, HIDDEN, CUT, LEAVER = 5, 6, 4, 3  # hosts (site K on host K)
HPE_LEADER_TIMEOUT_S = 600


def address_of(site: Path) -> str:
    return load_eth_key(site / "site.key").public_key.to_checksum_address()


def events(site: Path) -> list[dict]:
    path = site / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def leader_of(sites: list[Path], round: int) -> int | None:
    """The host whose site says it leads `round` (rank 0), if one does yet."""
    for k, site in enumerate(sites, 1):
        for e in events(site):
            if e["event"] == "elected" and e["round"] == round and e["rank"] == 0:
                return k
    return None


class FieldRun:
    def __init__(self, out: Path, args: argparse.Namespace) -> None:
        self.out, self.args = out, args
        self.sites = [out / f"site-{k}" for k in range(1, FOUNDERS + 1)]
        self.peers: dict[int, Watched] = {}
        self.cut_back: dict[int, float] = {}  # host -> wall time its link came back
        self.killed: int | None = None
        self.leave: Watched | None = None

    def faults(self, k: int, crash: bool) -> str:
        pace = [
            f"straggler:{k}@{r}:{self.args.pace}"
            for r in range(1, 1 + self.args.rounds)
        ]
        return ",".join(
            pace + ([f"leader-crash:{self.args.crash_round}"] if crash else [])
        )

    def start(self, lan: Lan, k: int, crash: bool = True) -> None:
        site = self.sites[k - 1]
        argv = [
            "peer",
            "--config",
            str(site / "site.toml"),
            "--faults",
            self.faults(k, crash),
        ]
        self.peers[k] = Watched(lan.start_cli(k, *argv))

    def adopted_rounds(self) -> int:
        return max(
            (e["round"] for e in events(self.sites[0]) if e["event"] == "adopted"),
            default=0,
        )

    def enroll_hidden(self) -> None:
        made = run_cli(
            "enroll", "--swarm", str(self.out), "--name", "hidden", "--outbound-only",
            "--partition-id", "0",  # the task has one part per founder: it shares one
        )  # fmt: skip
        if made.returncode:
            raise SystemExit(made.stderr)
        config = load_site_config(self.out / "hidden")
        relays = {load_site_config(s).dialled_address for s in self.sites[:2]}
        write_site_config(
            config.with_peers(tuple(p for p in config.peers if p.address in relays))
        )
        self.sites.append(self.out / "hidden")

    def play(self, lan: Lan) -> None:
        for k in range(1, FOUNDERS + 1):
            self.start(lan, k)
        done: set[str] = set()
        deadline = time.monotonic() + 120 + 3 * self.args.rounds * self.args.pace
        while any(p.process.poll() is None for p in self.peers.values()):
            if time.monotonic() > deadline:
                raise SystemExit("the swarm did not finish in time")
            round = self.adopted_rounds()
            if round >= 2 and "enroll" not in done:
                done.add("enroll")
                self.enroll_hidden()
                self.start(lan, HIDDEN)
                say("round 2: the outbound-only site enrolled and started")
            if round >= 4 and "cut" not in done:
                done.add("cut")
                lan.cut(CUT, self.args.cut_s)
                self.cut_back[CUT] = time.time() + self.args.cut_s
                say(f"round 5: site {CUT}'s link cut for {self.args.cut_s:.0f} s")
            if "leader cut" not in done and (k := leader_of(self.sites, 10)):
                done.add("leader cut")
                lan.cut(k, self.args.leader_cut_s)
                self.cut_back[k] = time.time() + self.args.leader_cut_s
                cut_s = self.args.leader_cut_s
                say(f"round 10: its leader, site {k}, cut for {cut_s:.0f} s")
            if round >= 12 and "leave" not in done:
                done.add("leave")
                config = str(self.sites[LEAVER - 1] / "site.toml")
                self.leave = Watched(lan.start_cli(LEAVER, "leave", "--config", config))
                say(f"round 12: site {LEAVER} asks to leave")
            for k, peer in list(self.peers.items()):
                if self.killed is None and peer.process.poll() == -9:
                    self.killed = k
                    time.sleep(1.0)
                    self.start(lan, k, crash=False)
                    crash = self.args.crash_round
                    say(f"round {crash}: its leader, site {k}, SIGKILLed; restarted")
            time.sleep(0.05)
        if self.leave is not None:
            self.leave.finish(timeout=60)


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def report(run: FieldRun, args: argparse.Namespace) -> bool:
    sites, checks = run.sites, []
    ledger = Ledger.open(sites[0])
    try:
        records = list(ledger.rounds())
    finally:
        ledger.close()
    first = {}  # round -> earliest adoption anywhere
    for site in sites:
        for e in events(site):
            if e["event"] == "adopted":
                first[e["round"]] = min(first.get(e["round"], e["t"]), e["t"])
    names = {
        address_of(s): (f"site-{k}" if k <= FOUNDERS else "hidden")
        for k, s in enumerate(sites, 1)
    }
    gaps = {r: first[r] - first[r - 1] for r in first if r - 1 in first}
    for r in records:
        gap = f"{gaps[r.round]:6.2f} s" if r.round in gaps else "      -"
        print(
            f"round {r.round:2d} {gap}  leader {names.get(r.leader, r.leader):7s} "
            f"view {r.view}  merged {len(r.contributors)}"
        )
    ends = {k: outcome("".join(p.lines)) for k, p in run.peers.items()}
    staying = {k: e for k, e in ends.items() if k != LEAVER}
    checks.append(
        (
            "every round sealed",
            [r.round for r in records] == list(range(1, args.rounds + 1)),
        )
    )
    checks.append(
        (
            "all staying sites finished",
            all(e[:2] == ("finished", args.rounds) for e in staying.values()),
        )
    )
    checks.append(("one head, one model", len({e[2:] for e in staying.values()}) == 1))
    for k, back in run.cut_back.items():
        who = address_of(sites[k - 1])
        again = [
            r.round for r in records if r.timestamp > back + 1 and who in r.contributors
        ]
        checks.append(
            (f"site {k} contributed after its cut ({again[:3]}...)", bool(again))
        )
    hidden = address_of(sites[HIDDEN - 1])
    led = [r.round for r in records if r.leader == hidden]
    joined = [r.round for r in records if hidden in (e.address for e in r.enrolled)]
    merged = [r.round for r in records if hidden in r.contributors]
    checks.append(
        (
            f"outbound-only site enrolled in round {joined}, "
            f"merged in {len(merged)} rounds",
            bool(joined and merged),
        )
    )
    checks.append((f"outbound-only site led rounds {led}", bool(led)))
    leaver = address_of(sites[LEAVER - 1])
    gone = [r.round for r in records if leaver in r.left]
    checks.append(
        (
            f"site {LEAVER} left with round {gone}",
            bool(gone) and ends[LEAVER][0] == "left",
        )
    )
    shown = run_cli("ledger", "show", str(sites[0])).stdout
    checks.append(
        (
            "ledger show lists the join and the leave",
            f"+{hidden[:10]}" in shown and f"-{leaver[:10]}" in shown,
        )
    )
    for name, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    normal = statistics.median(g for r, g in gaps.items() if r not in (5, 10, 15))
    print(
        f"median round {normal:.2f} s ({60 / normal:.1f} rounds/min, "
        f"paced by {args.pace} s updates)"
    )
    views = {r.round: r.view for r in records}
    for r, what in ((10, "leader's link cut"), (args.crash_round, "leader SIGKILLed")):
        if r in gaps:
            waited = views[r] * args.timeout
            print(
                f"round {r} ({what}): sealed at view {views[r]}, {gaps[r]:.2f} s "
                f"after round {r - 1} ({views[r]} round timeouts of {args.timeout} s "
                f"+ {gaps[r] - waited:.2f} s); HPE Swarm Learning's default "
                f"leader-failure timeout: {HPE_LEADER_TIMEOUT_S} s"
            )
    return all(ok for _, ok in checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pace", type=float, default=5.0)
    parser.add_argument("--timeout", type=int, default=10)
    parser.add_argument("--cut-s", type=float, default=60.0)
    parser.add_argument("--leader-cut-s", type=float, default=20.0)
    parser.add_argument("--crash-round", type=int, default=15)
    args = parser.parse_args()
    if (why := Lan.skip_reason()) is not None:
        raise SystemExit(why)
    with tempfile.TemporaryDirectory(prefix="field-run-") as folder:
        out = Path(folder) / "swarm"
        hosts = ",".join(Lan.address(k) for k in range(1, FOUNDERS + 1))
        made = run_cli(
            "init", "--task", "breast-cancer", "--sites", str(FOUNDERS),
            "--rounds", str(args.rounds), "--round-timeout", str(args.timeout),
            "--hosts", hosts, "--out", str(out),
        )  # fmt: skip
        if made.returncode:
            raise SystemExit(made.stderr)
        run = FieldRun(out, args)
        with Lan(HIDDEN) as lan:
            try:
                run.play(lan)
            finally:
                for peer in run.peers.values():
                    if peer.process.poll() is None:
                        peer.process.kill()
        ok = report(run, args)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
