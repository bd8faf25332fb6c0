"""A site's `ClientApp` calls, failing as Flower's do: one node's error, not the run's.

Flower turns an exception raised by a node's `ClientApp` into that node's
error reply and carries on with the other nodes. Every engine here calls the
app through `call_app`, which does the same: the site sits the round out
(or its score is NaN) and the swarm goes on. When failures leave a round
short of the updates it needs, nothing can ever seal it:
`unsealable` says why, in one line.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TypeVar

from flwr.app import ArrayRecord, Context
from flwr.clientapp import ClientApp

from swarmflower.errors import AppFailedError
from swarmflower.flower_messages import EVALUATE, model_instruction

log = logging.getLogger("swarmflower.clientapp")

ERROR_REPLY = "the ClientApp replied with an error"

T = TypeVar("T")


@dataclass(frozen=True)
class AppFailure:
    """A ClientApp call that failed: the exception's first line, e.g.
    `KeyError: 'lr'`; `key` is the missing key of a `KeyError` on a string."""

    error: str
    key: str | None = None

    @classmethod
    def of(cls, exc: Exception) -> AppFailure:
        lines = str(exc).strip().splitlines()
        error = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        key = exc.args[0] if isinstance(exc, KeyError) and exc.args else None
        return cls(error, key if isinstance(key, str) else None)

    def __str__(self) -> str:
        return self.error


def call_app(call: Callable[..., T | None], *args: object) -> T | AppFailure:
    """`call(*args)` (a call of a ClientApp, or a round step that makes one),
    with an exception or a None result (the app's error reply) as a failure."""
    try:
        result = call(*args)
    except Exception as exc:
        log.debug("ClientApp call failed", exc_info=True)
        return AppFailure.of(exc)
    return AppFailure(ERROR_REPLY) if result is None else result


def log_failure(
    site: str, round: int, failure: AppFailure, task: str = "train"
) -> None:
    """The one line that reports a site's failed call."""
    doing = "in round" if task == "train" else f"to {task} round"
    log.warning("site %s: ClientApp failed %s %d: %s", site, doing, round, failure)


class FailureLog:
    """Names each site's failure once, as the run goes on: the first time a
    site's app fails to train (or evaluate) with an error, one warning; the
    same error there in a later round only at debug level (the site sits
    that round out all the same). A new error is named again."""

    def __init__(self) -> None:
        self._named: set[tuple[str, str, str]] = set()

    def __call__(
        self, site: str, round: int, failure: AppFailure, task: str = "train"
    ) -> None:
        key = (site, task, failure.error)
        if key in self._named:
            log.debug("site %s: ClientApp failed again (%s %d)", site, task, round)
            return
        self._named.add(key)
        log_failure(site, round, failure, task)


def site_accuracy(
    app: ClientApp, model: ArrayRecord, round: int, site: int, context: Context
) -> float | None:
    """Site `site`'s test accuracy of `model` through its ClientApp (with the
    site's own `context`), as Flower's federated evaluation asks for it
    (None: the app replied with an error)."""
    message = model_instruction(model, EVALUATE, round, dst_node_id=site + 1)
    reply = app(message, context)
    if reply.has_error():
        return None
    return float(reply.content["metrics"]["accuracy"])


def score_sites(
    app: ClientApp, model: ArrayRecord, round: int, contexts: Mapping[int, Context]
) -> tuple[dict[int, float], dict[int, AppFailure]]:
    """The accuracy of round `round`'s model at each site of `contexts` (site
    -> its Context; NaN where the app failed), and the failures."""
    scores, failures = {}, {}
    for k, context in contexts.items():
        score = call_app(site_accuracy, app, model, round, k, context)
        if isinstance(score, AppFailure):
            failures[k], score = score, math.nan
        scores[k] = score
    return scores, failures


def unsealable(
    round: int, failures: Collection[AppFailure], sites: int, min_peers: int
) -> AppFailedError | None:
    """The error to stop with when `failures` (of `sites` sites) in round
    `round` leave it short of `min_peers` updates, so that nothing can ever
    seal it; else None. It names the most common failure (with its count if
    the sites failed differently) and, for a missing key, where run config
    comes from."""
    if not failures or sites - len(failures) >= min_peers:
        return None
    (error, count), *others = Counter(f.error for f in failures).most_common()
    if len(failures) == sites:
        who = f"every site failed in round {round}"
    else:
        who = (
            f"{len(failures)} of {sites} sites failed in round {round} "
            f"({min_peers} updates are needed to seal it)"
        )
    what = error if not others else f"{error} at {count} of {len(failures)} sites"
    key = next(f.key for f in failures if f.error == error)
    hint = ""
    if key is not None:
        hint = (
            f" (if the app reads context.run_config[{key!r}], pass "
            f'--run-config "{key}=..." or set it in [tool.flwr.app.config])'
        )
    return AppFailedError(f"{who}: {what}{hint}")
