"""The language server (`promptlang lsp`): diagnostics, hover, completion and formatting for editors."""
