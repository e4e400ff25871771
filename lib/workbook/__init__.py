"""The real-services test workbook: what the notebooks import.

    from workbook import setup, section, check, skip, require, summary
"""

from workbook.checks import check, require, results, section, setup, skip, summary
from workbook.env import Env, load_env
from workbook.errors import ConfigError, StackError, WorkbookError

__all__ = ["check", "require", "results", "section", "setup", "skip", "summary",
           "Env", "load_env", "ConfigError", "StackError", "WorkbookError"]
