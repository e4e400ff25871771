"""The real-services test workbook: what the notebooks import.

    from workbook import setup, section, check, skip, require, poll, summary

Three audiences, three places: the notebook API (this package's modules, `clients/`, `steps/`),
the headless runner behind run_all.py (`runner/`), and the embedded stack (`stack/`).
"""

from workbook.checks import check, require, results, section, skip, summary
from workbook.context import Workbook, setup
from workbook.env import Env, load_env
from workbook.errors import ConfigError, StackError, WorkbookError
from workbook.polling import PollTimeout, poll

__all__ = ["check", "require", "results", "section", "setup", "skip", "summary", "poll", "PollTimeout",
           "Workbook", "Env", "load_env", "ConfigError", "StackError", "WorkbookError"]
