"""The language server over stdio (pygls): each request is a few lines that hand the buffer to the front end."""

from __future__ import annotations

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from promptlang import __version__
from promptlang.language.source import Source
from promptlang.lsp.completion import complete
from promptlang.lsp.formatting import format_edits
from promptlang.lsp.hover import hover_text
from promptlang.lsp.positions import offset, position
from promptlang.lsp.problems import check, document_source

TRIGGERS = ["{", "|", " ", ","]  # completion opens by itself after these


def create_server() -> LanguageServer:
    """A language server with promptlang's features registered."""
    server = LanguageServer("promptlang", __version__)
    server.feature(types.TEXT_DOCUMENT_DID_OPEN)(_changed)
    server.feature(types.TEXT_DOCUMENT_DID_CHANGE)(_changed)
    server.feature(types.TEXT_DOCUMENT_DID_SAVE)(_changed)  # a data file read by the spec may have changed
    server.feature(types.TEXT_DOCUMENT_DID_CLOSE)(_closed)
    server.feature(types.TEXT_DOCUMENT_HOVER)(_hover)
    server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=TRIGGERS))(_complete)
    server.feature(types.TEXT_DOCUMENT_FORMATTING)(_format)
    return server


def serve() -> None:
    """Serve one editor over stdin and stdout until it says `exit`."""
    create_server().start_io()


def _source(server: LanguageServer, uri: str) -> Source:
    return document_source(server.workspace.get_text_document(uri).source, uri)


def _codec(server: LanguageServer):
    return server.workspace.position_codec


def _changed(server: LanguageServer, params) -> None:
    uri = params.text_document.uri
    problems = check(_source(server, uri), _codec(server))
    server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=problems))


def _closed(server: LanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=params.text_document.uri,
                                                                            diagnostics=[]))


def _hover(server: LanguageServer, params: types.HoverParams) -> types.Hover | None:
    source = _source(server, params.text_document.uri)
    found = hover_text(source.text, offset(source, params.position, _codec(server)))
    if found is None:
        return None
    text, (start, end) = found
    where = types.Range(start=position(source, *source.position(start), _codec(server)),
                        end=position(source, *source.position(end), _codec(server)))
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text), range=where)


def _complete(server: LanguageServer, params: types.CompletionParams) -> types.CompletionList:
    source = _source(server, params.text_document.uri)
    items = complete(source.text, offset(source, params.position, _codec(server)), source.directory)
    return types.CompletionList(is_incomplete=False, items=items)


def _format(server: LanguageServer, params: types.DocumentFormattingParams) -> list[types.TextEdit]:
    return format_edits(_source(server, params.text_document.uri), _codec(server))
