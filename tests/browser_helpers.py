"""Headless Chromium for tests: what a reader's browser makes of a page.

`render()` opens a page from disk as a reader would (a `file://` URI, no
server) and returns the DOM after scripts and images have loaded, plus a
screenshot, so a test can check that tables and embedded plots really render.
`tables()` turns the DOM's tables into lists of cell texts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 60
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--virtual-time-budget=5000",
)


def chromium_path() -> str | None:
    """The first Chromium or Chrome binary on PATH, or None."""
    for name in CANDIDATES:
        if found := shutil.which(name):
            return found
    return None


def render(html_path: Path, out_png: Path) -> str:
    """Render `html_path` in headless Chromium: screenshot to `out_png`, return DOM.

    Each run gets a fresh profile so no cache or earlier state leaks in.
    """
    binary = chromium_path()
    if binary is None:
        raise RuntimeError(
            f"no Chromium binary on PATH (tried {', '.join(CANDIDATES)})"
        )
    uri = Path(html_path).resolve().as_uri()
    dom = _run(binary, ["--dump-dom", uri])
    out_png = Path(out_png).resolve()
    out_png.unlink(missing_ok=True)
    _run(binary, [f"--screenshot={out_png}", "--window-size=1200,3000", uri])
    if not out_png.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot to {out_png}")
    return dom


def _run(binary: str, args: list[str]) -> str:
    """One Chromium run in its own process group, killed whole on timeout."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        command = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            process.communicate()
            raise RuntimeError(f"Chromium took over {TIMEOUT_S} s: {args}") from None
        finally:
            _kill_group(process.pid)  # helpers Chromium may leave behind
    if process.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-5:])
        raise RuntimeError(f"Chromium exited with {process.returncode}: {tail}")
    return out


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _TableParser(HTMLParser):
    """Collects each table's rows as the text of their `th`/`td` cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(dom: str) -> list[list[list[str]]]:
    """Every table in `dom`: a list of rows, each a list of cell texts."""
    parser = _TableParser()
    parser.feed(dom)
    return parser.tables
