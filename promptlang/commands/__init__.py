"""The commands that live in their own packages (report, explain, lsp): each module's `add` registers one."""

from promptlang.commands import explain
from promptlang.commands import report
from promptlang.commands import lsp

COMMANDS: tuple = (explain.add, report.add, lsp.add,)
