"""`report.html`: one self-contained page a clinician can open from disk. It is
built only from a run's result files (`summary.csv`, and when present
`rounds.csv`, `roc.csv`, `run.json`), so a run can be reported again long after
it finished, on a machine without the data: `run_files` reads and checks them,
`figures` draws the plots as base64 PNGs and `page` writes the HTML. The page
loads nothing: styles are inline and a Content-Security-Policy forbids any other
source, so it reads the same offline as online.
"""

from swarmflower.report.page import render_page, write_report
from swarmflower.report.run_files import Run, Stat, load_run

__all__ = ["Run", "Stat", "load_run", "render_page", "write_report"]
