"""`promptlang lsp`: the language server, over stdin and stdout, for editors (diagnostics, hover, completion,
formatting); it needs pygls (`pip install 'promptlang[lsp]'`) and never imports torch."""

from __future__ import annotations

import argparse

from promptlang.commands.usage import EXIT_OK, UsageError

NEEDS_PYGLS = "the language server needs pygls: pip install 'promptlang[lsp]'"


def add(commands) -> None:
    """Register `lsp` on the command line's subcommands."""
    lsp = commands.add_parser(
        "lsp", help="run the language server for editors (over stdin and stdout)",
        description="Serve one editor over stdin and stdout (the Language Server Protocol): diagnostics as you "
                    "type (the messages of `promptlang check`), hover help for every setting, completion of "
                    "settings, names and data fields, and formatting through `promptlang fmt`. See docs/editors.md.")
    lsp.add_argument("--stdio", action="store_true", help="accepted for editors that pass it; stdio is the only "
                                                          "transport")
    lsp.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until the editor sends `exit`; without pygls, say how to install it (exit 2, as a usage error)."""
    try:
        import lsprotocol  # noqa: F401
        import pygls  # noqa: F401
    except ImportError:
        raise UsageError(NEEDS_PYGLS) from None
    from promptlang.lsp.server import serve

    serve()
    return EXIT_OK
