"""Work-arounds for interpreter bugs that threads of one swarm would hit.

CPython 3.11 keeps the AST builder's recursion counter per interpreter, not
per thread, so two threads running `ast.parse` at once can fail with
"SystemError: AST constructor recursion depth mismatch" (fixed in 3.12).
numpy parses every `.npy` header with `ast.literal_eval`, and Flower's
`Array.numpy()` reads `.npy` bytes: sites running as threads (the in-process
engine, a real site's gRPC workers) hit it, rarely (seen once in a full test
run, inside FedAdam's `aggregate_train`; no small reproducer triggers it
reliably). Serialising `ast.parse` costs microseconds per model and removes
the race.
"""

from __future__ import annotations

import ast
import functools
import sys
import threading


def serialise_ast_parse() -> None:
    """Make `ast.parse` (and so `ast.literal_eval`) safe across threads."""
    if sys.version_info >= (3, 12) or getattr(ast.parse, "_swarmflower_locked", False):
        return
    lock = threading.Lock()
    original = ast.parse

    @functools.wraps(original)
    def parse(*args, **kwargs):
        with lock:
            return original(*args, **kwargs)

    parse._swarmflower_locked = True  # type: ignore[attr-defined]
    ast.parse = parse
