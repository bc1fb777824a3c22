"""The language server (`policyc lsp`): its requests and notifications, over stdio.

An edit is answered at once with the syntax and checker diagnostics of the
incremental front end (document.py); verification runs in a worker process
(worker.py) and its findings, property statuses and proved fixes follow.
Every request answers, on any text: a handler that fails logs the failure
and returns an empty result, so a broken document never breaks the server.
"""

from __future__ import annotations

import functools
import gc
import time
import traceback
from typing import Any, Callable, TypeVar

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from sealnet.compiler.formatter import FormatError, format_text
from sealnet.compiler.lsp import actions, completion, hover, navigation, tokens
from sealnet.compiler.lsp.convert import SOURCE
from sealnet.compiler.lsp.document import FrontEnd
from sealnet.compiler.lsp.state import DocumentState, Verified
from sealnet.compiler.lsp.worker import Background

SERVER_NAME = SOURCE
SERVER_VERSION = "0.2.0"
F = TypeVar("F", bound=Callable[..., Any])


class PolicyServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(SERVER_NAME, SERVER_VERSION, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.documents: dict[str, DocumentState] = {}
        self._background: Background | None = None
        self._started: dict[int, float] = {}

    # -- logging ------------------------------------------------------------------------------
    def log(self, message: str, kind: types.MessageType = types.MessageType.Log) -> None:
        self.window_log_message(types.LogMessageParams(type=kind, message=f"policyc: {message}"))

    # -- documents ------------------------------------------------------------------------------
    @property
    def background(self) -> Background:
        if self._background is None:
            self._background = Background(self.on_background, self.log)
        return self._background

    def refresh(self, uri: str) -> None:
        """Re-analyse the document's current text, publish, and start its verification."""
        started = time.perf_counter()
        document = self.workspace.get_text_document(uri)
        state = self.documents.get(uri)
        if state is None:
            front_end = FrontEnd(uri)
            state = self.documents[uri] = DocumentState(uri, front_end, front_end.analyse(document.source, document.version))
            gc.collect()
            gc.freeze()  # what is loaded now lives long: keep the collector from walking it on every keystroke
        else:
            state.analysis = state.front_end.analyse(document.source, document.version)
        analysed = time.perf_counter()
        self.publish(uri)
        published = time.perf_counter()
        job = self.background.submit(uri, document.version, document.source)
        state.pending = job
        self._started[job.id] = started
        self.log(f"verifying {uri} version {document.version} (analysed in {(analysed - started) * 1000:.0f} ms, "
                 f"diagnostics published in {(published - analysed) * 1000:.0f} ms)")

    def publish(self, uri: str) -> None:
        state = self.documents.get(uri)
        if state is None:
            return
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=state.lsp_diagnostics(), version=state.version))

    def close(self, uri: str) -> None:
        state = self.documents.pop(uri, None)
        if state is not None and self._background is not None:
            self._background.cancel(uri, "as the document closed")
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    # -- background results ---------------------------------------------------------------------
    def on_background(self, message: tuple) -> None:
        try:
            self._on_background(message)
        except Exception:  # never let a result kill the loop
            self.log(traceback.format_exc(), types.MessageType.Error)

    def _on_background(self, message: tuple) -> None:
        kind, job = message[0], message[1]
        state = self.documents.get(job.uri)
        if state is None or state.analysis.text != job.text:
            return  # a newer edit is being verified
        if kind == "checked":
            _, _, diagnostics, errors = message
            state.checked = (state.analysis, diagnostics, errors)
            state.front_end.remember_full_check(state.analysis, diagnostics)
            self.publish(job.uri)
        elif kind == "verified":
            _, _, verdict, policy = message
            state.verified = Verified(state.analysis, verdict, policy)
            self.publish(job.uri)
            self._refresh_lenses()
            elapsed = time.perf_counter() - self._started.get(job.id, time.perf_counter())
            self.log(f"verified {job.uri} version {job.version} in {elapsed:.2f} s: "
                     f"{len(verdict.findings)} finding(s)")
        elif kind == "fix":
            if state.verified is not None and state.verified.analysis.text == job.text:
                state.verified.fixes.append(message[2])
        elif kind == "failed":
            self.log(f"verification failed: {message[2]}", types.MessageType.Error)
        elif kind == "done":
            state.pending = None
            self._started.pop(job.id, None)
            self._refresh_lenses()

    def _refresh_lenses(self) -> None:
        capabilities = self.client_capabilities.workspace
        lens = capabilities.code_lens if capabilities else None
        if lens is not None and lens.refresh_support:
            self.workspace_code_lens_refresh(None)

    def shutdown_background(self) -> None:
        if self._background is not None:
            self._background.close()
            self._background = None


def _answering(server: PolicyServer, empty: Callable[[], Any]) -> Callable[[F], F]:
    """Run a handler; if it fails, log why and answer `empty()` rather than an error."""
    def wrap(handler: F) -> F:
        @functools.wraps(handler)
        def safe(ls: PolicyServer, params: Any) -> Any:
            try:
                return handler(ls, params)
            except Exception:
                server.log(f"{handler.__name__} failed:\n{traceback.format_exc()}", types.MessageType.Error)
                return empty()
        return safe  # type: ignore[return-value]
    return wrap


def build_server() -> PolicyServer:
    server = PolicyServer()
    none: Callable[[], Any] = lambda: None  # noqa: E731
    empty: Callable[[], Any] = list

    def state_of(uri: str) -> DocumentState | None:
        return server.documents.get(uri)

    @server.feature(types.INITIALIZED)
    @_answering(server, none)
    def initialized(ls: PolicyServer, params: types.InitializedParams) -> None:
        ls.background.prestart()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    @_answering(server, none)
    def did_open(ls: PolicyServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.refresh(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    @_answering(server, none)
    def did_change(ls: PolicyServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.refresh(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    @_answering(server, none)
    def did_save(ls: PolicyServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    @_answering(server, none)
    def did_close(ls: PolicyServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.close(params.text_document.uri)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: PolicyServer, params: Any) -> None:
        ls.shutdown_background()

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    @_answering(server, none)
    def on_hover(ls: PolicyServer, params: types.HoverParams) -> types.Hover | None:
        state = state_of(params.text_document.uri)
        if state is None:
            return None
        text = hover.hover_text(state, params.position.line, params.position.character)
        if text is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    @_answering(server, empty)
    def on_definition(ls: PolicyServer, params: types.DefinitionParams) -> list[types.Location]:
        state = state_of(params.text_document.uri)
        return navigation.definition(state.analysis, params.position.line, params.position.character) if state else []

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    @_answering(server, empty)
    def on_references(ls: PolicyServer, params: types.ReferenceParams) -> list[types.Location]:
        state = state_of(params.text_document.uri)
        if state is None:
            return []
        return navigation.references(state.analysis, params.position.line, params.position.character,
                                     params.context.include_declaration)

    @server.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
    @_answering(server, none)
    def on_prepare_rename(ls: PolicyServer, params: types.PrepareRenameParams) -> types.Range | None:
        state = state_of(params.text_document.uri)
        return navigation.prepare_rename(state.analysis, params.position.line, params.position.character) if state else None

    @server.feature(types.TEXT_DOCUMENT_RENAME)
    @_answering(server, none)
    def on_rename(ls: PolicyServer, params: types.RenameParams) -> types.WorkspaceEdit | None:
        state = state_of(params.text_document.uri)
        if state is None:
            return None
        result = navigation.rename(state.analysis, params.position.line, params.position.character, params.new_name)
        if isinstance(result, str):
            ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning,
                                                           message=f"cannot rename: {result}"))
            return None
        return result

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @_answering(server, empty)
    def on_symbols(ls: PolicyServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
        state = state_of(params.text_document.uri)
        return navigation.document_symbols(state.analysis) if state else []

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=["."]))
    @_answering(server, empty)
    def on_completion(ls: PolicyServer, params: types.CompletionParams) -> list[types.CompletionItem]:
        state = state_of(params.text_document.uri)
        return completion.completions(state.analysis, params.position.line, params.position.character) if state else []

    @server.feature(types.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL,
                    types.SemanticTokensLegend(token_types=tokens.TOKEN_TYPES, token_modifiers=[]))
    @_answering(server, lambda: types.SemanticTokens(data=[]))
    def on_tokens(ls: PolicyServer, params: types.SemanticTokensParams) -> types.SemanticTokens:
        state = state_of(params.text_document.uri)
        return types.SemanticTokens(data=tokens.semantic_tokens(state.analysis) if state else [])

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    @_answering(server, empty)
    def on_formatting(ls: PolicyServer, params: types.DocumentFormattingParams) -> list[types.TextEdit]:
        state = state_of(params.text_document.uri)
        if state is None:
            return []
        text = state.analysis.text
        try:
            formatted = format_text(text, params.text_document.uri)
        except FormatError:
            return []  # syntax errors: the diagnostics say where
        if formatted == text:
            return []
        lines = text.split("\n")
        end = types.Position(line=len(lines), character=0)
        return [types.TextEdit(range=types.Range(start=types.Position(line=0, character=0), end=end),
                               new_text=formatted)]

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
    @_answering(server, empty)
    def on_code_action(ls: PolicyServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        state = state_of(params.text_document.uri)
        if state is None:
            return []
        return actions.code_actions(state, params.range.start.line, params.range.end.line)

    @server.feature(types.TEXT_DOCUMENT_CODE_LENS)
    @_answering(server, empty)
    def on_code_lens(ls: PolicyServer, params: types.CodeLensParams) -> list[types.CodeLens]:
        state = state_of(params.text_document.uri)
        return actions.code_lenses(state) if state else []

    return server


def serve_stdio() -> None:
    server = build_server()
    try:
        server.start_io()
    finally:
        server.shutdown_background()
