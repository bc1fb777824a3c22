"""The language server: diagnostics (and formatting) for editors, over stdio.

Positions: LSP counts lines and characters from 0; our spans count from 1.
Policies are ASCII in practice, so code points stand in for UTF-16 units.
"""

from __future__ import annotations

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from sealnet.compiler.diagnostics import Diagnostic, Severity
from sealnet.compiler.frontend import compile_text

SERVER_NAME = "policyc"
_SEVERITY = {
    Severity.ERROR: types.DiagnosticSeverity.Error,
    Severity.WARNING: types.DiagnosticSeverity.Warning,
    Severity.INFO: types.DiagnosticSeverity.Information,
}


def to_lsp(diag: Diagnostic) -> types.Diagnostic:
    span = diag.span
    message = diag.message if not diag.hint else f"{diag.message}\nhint: {diag.hint}"
    return types.Diagnostic(
        range=types.Range(
            start=types.Position(line=span.line - 1, character=span.column - 1),
            end=types.Position(line=span.end_line - 1, character=max(span.end_column - 1, span.column)),
        ),
        message=message,
        severity=_SEVERITY[diag.severity],
        code=diag.code,
        source=SERVER_NAME,
        related_information=[
            types.DiagnosticRelatedInformation(
                location=types.Location(
                    uri=note.span.file,
                    range=types.Range(
                        start=types.Position(line=note.span.line - 1, character=note.span.column - 1),
                        end=types.Position(line=note.span.end_line - 1, character=note.span.end_column - 1),
                    ),
                ),
                message=note.message,
            )
            for note in diag.notes
        ] or None,
    )


def diagnose(uri: str, text: str) -> list[types.Diagnostic]:
    _, diagnostics = compile_text(text, uri)
    return [to_lsp(d) for d in diagnostics if d.span.file == uri]


def build_server() -> LanguageServer:
    server = LanguageServer(SERVER_NAME, "0.1.0")

    def publish(uri: str) -> None:
        document = server.workspace.get_text_document(uri)
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnose(uri, document.source),
                                           version=document.version)
        )

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: LanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))

    return server


def serve_stdio() -> None:
    build_server().start_io()
