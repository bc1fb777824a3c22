"""The language server's features, driven as an editor drives them: `policyc lsp` over stdio (pytest-lsp).

Every fix the server offers is applied to the text and re-checked here with
`diff` (Z3) against the policy it claims to change.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities  # noqa: E402

from sealnet.compiler.diff import diff  # noqa: E402
from sealnet.compiler.formatter import format_text  # noqa: E402
from sealnet.compiler.frontend import compile_text  # noqa: E402
from sealnet.compiler.lsp.fixes import Edit, apply  # noqa: E402
from sealnet.compiler.parser import STATEMENT_KEYWORDS  # noqa: E402
from sealnet.compiler.verify import verify  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from gen_policy import generate  # noqa: E402

SERVER = [sys.executable, "-m", "sealnet.compiler.cli", "lsp"]
URI = "file:///tmp/sealnet-lsp-test/t.policy"
POLICY = """policy "t" version 1

domain hospital { tee sev-snp; nodes 198.18.1.0/24 }
domain lab      { tee tdx;     nodes 198.18.2.0/24, 198.18.3.0/24 }

workflow genomics {
  ingest: hospital port 7000
  align:  lab      port {7001, 7100-7199}
  ingest -> align tcp
}

rule lab_local: allow from lab to lab
rule lab_web:   allow tcp from lab to lab port {80, 443}
rule no_ssh:    deny tcp from lab to lab port 22
rule to_align:  seal udp from hospital to genomics.align
default deny

assert never from hospital to lab port 22
assert sealed from lab to lab
"""
# 0-based lines of POLICY
LINE = {text.split(":")[0].split()[-1] if text.startswith("rule") else text: i
        for i, text in enumerate(POLICY.split("\n"))}
BROKEN = """polcy "x" versoin
domain { tee; nodes 999.1.1.1/40, }
domain a { tee quantum; nodes 10.0.0.0/8 }}
workflow w { s: nowhere port 70000-1; s -> t udp; }
rule : allow from to
rule r1: seal icmp from a to w.s port 80
rule r2 allow from {a, , b} to !!!
assert maybe from a to a
default reject
\x00\x01 garbage ### "unterminated
rule r3: deny from a to 10.0.0.0/33 port 5-1
"""


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient):
    # VS Code's capabilities include code lens refresh; answer it as VS Code does.
    lsp_client.feature(types.WORKSPACE_CODE_LENS_REFRESH)(lambda ls, params: None)
    # Keep every diagnostics notification: several can arrive between two awaits.
    features = lsp_client.protocol.fm.features
    keep = features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS]
    received: list[types.PublishDiagnosticsParams] = []

    def record(params: types.PublishDiagnosticsParams):
        received.append(params)
        return keep(params)

    features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = record
    lsp_client.received = received  # type: ignore[attr-defined]
    lsp_client.seen = 0  # type: ignore[attr-defined]
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code")))
    yield
    await lsp_client.shutdown_session()


# -- helpers ---------------------------------------------------------------------------------
def open_document(client: LanguageClient, text: str, uri: str = URI, version: int = 1) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="sealnet", version=version, text=text)))


def change_document(client: LanguageClient, text: str, version: int, uri: str = URI) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))


async def published(client: LanguageClient, predicate, timeout: float = 60.0) -> types.PublishDiagnosticsParams:
    """The first diagnostics notification not yet looked at that satisfies `predicate`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received = client.received  # type: ignore[attr-defined]
        while client.seen < len(received):  # type: ignore[attr-defined]
            params = received[client.seen]  # type: ignore[attr-defined]
            client.seen += 1  # type: ignore[attr-defined]
            if predicate(params):
                return params
        await asyncio.sleep(0.01)
    raise TimeoutError("no matching diagnostics")


async def logged(client: LanguageClient, predicate, timeout: float = 10.0) -> str:
    """A window/logMessage from the server that satisfies `predicate` (it may follow a publish)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in client.log_messages:
            if predicate(m.message):
                return m.message
        await asyncio.sleep(0.01)
    raise TimeoutError("no matching log message")


def codes(params: types.PublishDiagnosticsParams) -> set[str]:
    return {str(d.code) for d in params.diagnostics}


async def verified(client: LanguageClient, version: int = 1) -> types.PublishDiagnosticsParams:
    return await published(client, lambda p: p.version == version and any(c.startswith("V") for c in codes(p)))


def pos(line: int, text: str, needle: str, offset: int = 0) -> types.Position:
    return types.Position(line=line, character=text.split("\n")[line].index(needle) + offset)


def doc() -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=URI)


def text_edits(edits: list[types.TextEdit]) -> tuple[Edit, ...]:
    return tuple(Edit(e.range.start.line, e.range.start.character, e.range.end.line, e.range.end.character,
                      e.new_text) for e in edits)


async def hover_text(client: LanguageClient, position: types.Position) -> str:
    result = await client.text_document_hover_async(types.HoverParams(text_document=doc(), position=position))
    assert result is not None
    return result.contents.value  # type: ignore[union-attr]


# -- diagnostics ------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_checker_diagnostics_first_then_findings_with_related_rules(client: LanguageClient):
    open_document(client, POLICY.replace("rule lab_local:", "rule lab_local: allow from lab to nowhere\nrule x:"))
    first = await published(client, lambda p: True)
    assert "E101" in codes(first)  # checker diagnostics do not wait for the verifier
    change_document(client, POLICY, 2)
    findings = await verified(client, 2)
    by_code = {str(d.code): d for d in findings.diagnostics}
    assert {"V301", "V302", "V310", "V311"} <= set(by_code)
    assert by_code["V301"].range.start.line == LINE["no_ssh"]
    related = by_code["V301"].related_information
    assert related and related[0].location.range.start.line == LINE["lab_local"]
    assert "for example tcp 198.18." in by_code["V310"].message  # the witness packet
    for code in ("V302", "V310", "V311"):  # every finding points at the rules involved
        assert by_code[code].related_information, code
    assert by_code["V310"].related_information[0].location.range.start.line == LINE["lab_local"]
    assert by_code["V311"].related_information[0].location.range.start.line == LINE["default deny"]


# -- hover --------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_hover_expands_names_ports_and_rules(client: LanguageClient):
    open_document(client, POLICY)
    rule_line = LINE["lab_local"]
    lab = await hover_text(client, pos(rule_line, POLICY, "lab to", 1))
    assert "domain `lab`" in lab and "198.18.2.0/24, 198.18.3.0/24" in lab and "tdx" in lab
    stage = await hover_text(client, pos(LINE["to_align"], POLICY, "genomics.align", 10))
    assert "stage `genomics.align`" in stage and "7001, 7100-7199" in stage and "101 ports" in stage
    ports = await hover_text(client, pos(LINE["lab_web"], POLICY, "{80"))
    assert "80, 443" in ports and "2 ports" in ports and "tcp" in ports
    await verified(client)
    decides = await hover_text(client, pos(rule_line, POLICY, "allow"))
    assert "allow" in decides and "decides" in decides and "198.18.2.0/23" in decides
    shadowed = await hover_text(client, pos(LINE["no_ssh"], POLICY, "deny"))
    assert "shadowed" in shadowed and "`lab_local`" in shadowed
    lens = await client.text_document_code_lens_async(types.CodeLensParams(text_document=doc()))
    titles = {lens_.range.start.line: lens_.command.title for lens_ in lens if lens_.command}
    assert titles[LINE["assert never from hospital to lab port 22"]].startswith("✓ proved")
    assert titles[LINE["assert sealed from lab to lab"]].startswith("✗ refuted: tcp 198.18.")
    assert titles[LINE["  ingest -> align tcp"]].startswith("✗ refuted")


@pytest.mark.asyncio
async def test_hover_answers_within_50_ms_on_a_2000_rule_file(client: LanguageClient):
    text = generate(2000)
    open_document(client, text)
    await verified(client)  # the server is idle again (benchmarks/bench_lsp.py also times it while busy)
    line = next(i for i, ln in enumerate(text.split("\n")) if ln.startswith("rule r1500:"))
    times = []
    for where in ("to d", "allow", "deny", "port"):
        if where in text.split("\n")[line]:
            start = time.perf_counter()
            assert await hover_text(client, pos(line, text, where, 4 if where == "to d" else 0))
            times.append(time.perf_counter() - start)
    assert sorted(times)[len(times) // 2] < 0.05


# -- navigation ---------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_definition_references_and_rename(client: LanguageClient):
    open_document(client, POLICY)
    at_use = pos(LINE["lab_local"], POLICY, "lab to", 1)
    found = await client.text_document_definition_async(types.DefinitionParams(text_document=doc(), position=at_use))
    assert [loc.range.start.line for loc in found] == [LINE['domain lab      { tee tdx;     nodes 198.18.2.0/24, 198.18.3.0/24 }']]  # type: ignore[union-attr]
    refs = await client.text_document_references_async(types.ReferenceParams(
        text_document=doc(), position=at_use, context=types.ReferenceContext(include_declaration=True)))
    expected = 1 + 1 + 2 * 3 + 3  # definition, stage placement, three rules, the asserts
    assert len(refs) == expected
    stage_use = pos(LINE["to_align"], POLICY, "genomics.align", 10)
    found = await client.text_document_definition_async(types.DefinitionParams(text_document=doc(), position=stage_use))
    assert found[0].range.start.line == LINE["  align:  lab      port {7001, 7100-7199}"]  # type: ignore[index]

    edit = await client.text_document_rename_async(types.RenameParams(
        text_document=doc(), position=at_use, new_name="laboratory"))
    renamed = apply(POLICY, text_edits(edit.changes[URI]))  # type: ignore[union-attr]
    assert renamed.count("laboratory") == expected and " lab " not in renamed
    old, _ = compile_text(POLICY, "old")
    new, diags = compile_text(renamed, "new")
    assert new is not None and not [d for d in diags if d.severity.value == "error"]
    assert diff(old, new).equivalent  # a rename changes no decision

    stage_edit = await client.text_document_rename_async(types.RenameParams(
        text_document=doc(), position=stage_use, new_name="aligner"))
    renamed = apply(POLICY, text_edits(stage_edit.changes[URI]))  # type: ignore[union-attr]
    assert "aligner:  lab" in renamed and "genomics.aligner" in renamed and "ingest -> aligner" in renamed
    assert compile_text(renamed, "new")[0] is not None

    refused = await client.text_document_rename_async(types.RenameParams(
        text_document=doc(), position=at_use, new_name="hospital"))
    assert refused is None  # would merge two domains


@pytest.mark.asyncio
async def test_symbols_completion_tokens_and_formatting(client: LanguageClient):
    messy = POLICY.replace("rule lab_local: allow from lab to lab", "rule   lab_local :allow   from lab  to lab;")
    open_document(client, messy)
    outline = await client.text_document_document_symbol_async(types.DocumentSymbolParams(text_document=doc()))
    names = [s.name for s in outline]  # type: ignore[union-attr]
    assert names[:4] == ['policy "t"', "hospital", "lab", "genomics"] and "no_ssh" in names
    workflow = next(s for s in outline if s.name == "genomics")  # type: ignore[union-attr]
    assert [c.name for c in workflow.children] == ["ingest", "align", "ingest -> align"]  # type: ignore[union-attr]

    items = await client.text_document_completion_async(types.CompletionParams(
        text_document=doc(), position=types.Position(line=LINE["no_ssh"], character=len("rule no_ssh:    deny tcp from "))))
    labels = {i.label for i in (items.items if isinstance(items, types.CompletionList) else items)}  # type: ignore[union-attr]
    assert {"hospital", "lab", "genomics.align", "genomics.ingest", "any", "port"} <= labels
    after_dot = await client.text_document_completion_async(types.CompletionParams(
        text_document=doc(), position=pos(LINE["to_align"], messy, "genomics.", len("genomics."))))
    assert {i.label for i in after_dot} == {"ingest", "align"}  # type: ignore[union-attr]
    start = await client.text_document_completion_async(types.CompletionParams(
        text_document=doc(), position=types.Position(line=LINE[""], character=0)))
    assert {i.label for i in start} == set(STATEMENT_KEYWORDS)  # type: ignore[union-attr]

    tokens = await client.text_document_semantic_tokens_full_async(types.SemanticTokensParams(text_document=doc()))
    assert tokens is not None and len(tokens.data) % 5 == 0 and len(tokens.data) > 5 * 40

    edits = await client.text_document_formatting_async(types.DocumentFormattingParams(
        text_document=doc(), options=types.FormattingOptions(tab_size=2, insert_spaces=True)))
    assert edits and apply(messy, text_edits(edits)) == format_text(messy)


# -- fixes ---------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_each_fix_is_what_diff_says(client: LanguageClient):
    open_document(client, POLICY)
    await verified(client)
    old, _ = compile_text(POLICY, "old")
    assert old is not None
    offered = {}
    for _ in range(100):  # the fixes follow the findings; wait for all three
        result = await client.text_document_code_action_async(types.CodeActionParams(
            text_document=doc(), range=types.Range(start=types.Position(line=0, character=0),
                                                   end=types.Position(line=40, character=0)),
            context=types.CodeActionContext(diagnostics=[])))
        offered = {a.title.split()[0]: a for a in result or [] if isinstance(a, types.CodeAction)}
        if len(offered) == 3:
            break
        await asyncio.sleep(0.1)
    assert set(offered) == {"Delete", "Move", "Add"}
    for verb, action in offered.items():
        assert "proved by diff" in action.title
        fixed = apply(POLICY, text_edits(action.edit.changes[URI]))  # type: ignore[union-attr]
        new, diags = compile_text(fixed, "fixed")
        assert new is not None, diags
        result = diff(old, new)
        assert not result.truncated and not result.unknown  # decided, so it proves what it shows
        if verb == "Delete":
            assert "lab_web" not in fixed and result.equivalent
        elif verb == "Move":
            assert fixed.index("rule no_ssh") < fixed.index("rule lab_local")
            assert result.differences and all(d.new_rule == "no_ssh" for d in result.differences)
        else:
            assert result.differences and all(d.new_action.value == "seal" for d in result.differences)
            assert not [f for f in verify(new).findings if f.kind == "workflow-blocked"]


@pytest.mark.asyncio
async def test_no_fix_is_offered_for_a_text_that_was_not_verified(client: LanguageClient):
    open_document(client, POLICY)
    await verified(client)
    change_document(client, POLICY + "\n# edited\n", 2)
    result = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=doc(), range=types.Range(start=types.Position(line=0, character=0),
                                               end=types.Position(line=40, character=0)),
        context=types.CodeActionContext(diagnostics=[])))
    assert not result  # the proof was for version 1 only


# -- cancellation ----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_new_edit_cancels_a_slow_verification(client: LanguageClient):
    slow = generate(2000)
    open_document(client, slow)
    await published(client, lambda p: p.version == 1)
    await asyncio.sleep(0.6)  # past the debounce: the worker is busy with version 1
    edited = slow.replace("default deny", "rule added: deny tcp from d1 to d2 port 9\ndefault deny")
    change_document(client, edited, 2)
    final = await published(client, lambda p: p.version == 2 and any(str(c).startswith("V") for c in codes(p)),
                            timeout=120)
    assert final.version == 2
    await logged(client, lambda m: "verified" in m and "version 2 " in m)
    logs = [m.message for m in client.log_messages]
    assert any("version 1 cancelled" in m for m in logs)
    assert not any("verified" in m and "version 1 " in m for m in logs)


# -- broken input ----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_every_request_on_a_broken_document_answers(client: LanguageClient):
    open_document(client, BROKEN)
    first = await published(client, lambda p: True)
    assert first.diagnostics  # syntax errors, each statement on its own
    lines = BROKEN.split("\n")
    rnd = random.Random(14)
    positions = [types.Position(line=rnd.randrange(len(lines) + 2), character=rnd.randrange(60)) for _ in range(40)]
    positions += [types.Position(line=i, character=j) for i in range(len(lines)) for j in (0, 5, 12)]
    for p in positions:
        await client.text_document_hover_async(types.HoverParams(text_document=doc(), position=p))
        await client.text_document_definition_async(types.DefinitionParams(text_document=doc(), position=p))
        await client.text_document_references_async(types.ReferenceParams(
            text_document=doc(), position=p, context=types.ReferenceContext(include_declaration=True)))
        await client.text_document_rename_async(types.RenameParams(text_document=doc(), position=p, new_name="zz"))
        await client.text_document_completion_async(types.CompletionParams(text_document=doc(), position=p))
    await client.text_document_document_symbol_async(types.DocumentSymbolParams(text_document=doc()))
    await client.text_document_semantic_tokens_full_async(types.SemanticTokensParams(text_document=doc()))
    assert not await client.text_document_formatting_async(types.DocumentFormattingParams(
        text_document=doc(), options=types.FormattingOptions(tab_size=2, insert_spaces=True)))
    await client.text_document_code_lens_async(types.CodeLensParams(text_document=doc()))
    await client.text_document_code_action_async(types.CodeActionParams(
        text_document=doc(), range=types.Range(start=types.Position(line=0, character=0),
                                               end=types.Position(line=20, character=0)),
        context=types.CodeActionContext(diagnostics=[])))
    # Edits that break and mend the text, one character at a time, then a request on a good text.
    for i in range(1, 30):
        cut = POLICY[: len(POLICY) * i // 30]
        change_document(client, cut, i + 1)
        last = types.Position(line=cut.count("\n"), character=len(cut.split("\n")[-1]))
        for p in (last, types.Position(line=max(0, last.line - 1), character=8)):
            await client.text_document_hover_async(types.HoverParams(text_document=doc(), position=p))
            await client.text_document_completion_async(types.CompletionParams(text_document=doc(), position=p))
            await client.text_document_definition_async(types.DefinitionParams(text_document=doc(), position=p))
        await client.text_document_document_symbol_async(types.DocumentSymbolParams(text_document=doc()))
        await client.text_document_code_lens_async(types.CodeLensParams(text_document=doc()))
    change_document(client, POLICY, 40)
    await verified(client, 40)
    assert "domain `lab`" in await hover_text(client, pos(LINE["lab_local"], POLICY, "lab to", 1))
    assert not [m for m in client.log_messages if m.type == types.MessageType.Error]


# -- incremental edits and a killed verifier ---------------------------------------------------------
@pytest.mark.asyncio
async def test_range_edits_move_diagnostics_and_findings_with_their_rules(client: LanguageClient):
    open_document(client, POLICY)
    await verified(client)
    line = LINE["lab_local"]
    insert = types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(line=line, character=0), end=types.Position(line=line, character=0)),
        text="rule typo: allow from lab to labb\n# a comment\n")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2), content_changes=[insert]))
    first = await published(client, lambda p: p.version == 2)
    e101 = [d for d in first.diagnostics if d.code == "E101"]
    assert [d.range.start for d in e101] == [types.Position(line=line, character=29)]
    # The error stops verification; the earlier findings are withdrawn rather than shown stale.
    assert not any(str(c).startswith("V") for c in codes(first))
    fix = types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(line=line, character=29), end=types.Position(line=line, character=33)),
        text="lab")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=3), content_changes=[fix]))
    mended = await published(client, lambda p: p.version == 3)
    assert "E101" not in codes(mended)
    findings = await verified(client, 3)
    shadowed = next(d for d in findings.diagnostics if d.code == "V301")
    assert shadowed.range.start.line == LINE["no_ssh"] + 2  # the rule moved down two lines, and its finding too


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@pytest.mark.asyncio
async def test_a_killed_verifier_costs_one_result_not_the_server(client: LanguageClient):
    import os
    import signal

    slow = generate(1000)
    open_document(client, slow)
    await published(client, lambda p: p.version == 1)
    await asyncio.sleep(0.5)
    server = client._server
    assert server is not None
    workers = [p for p in descendants(server.pid) if p not in descendants_direct(server.pid)]
    assert workers, "the verifier runs in worker processes"
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    await asyncio.sleep(0.5)  # the server notices before the next edit
    change_document(client, slow.replace("default deny", "rule added: deny tcp from d1 to d2 port 9\ndefault deny"), 2)
    final = await published(client, lambda p: p.version == 2 and any(str(c).startswith("V") for c in codes(p)),
                            timeout=120)
    assert final.version == 2
    await logged(client, lambda m: "exited while verifying version 1" in m)
    line = next(i for i, ln in enumerate(slow.split("\n")) if ln.startswith("rule r900:"))
    assert "domain `d" in await hover_text(client, pos(line, slow, " to d", 4))


def descendants_direct(pid: int) -> list[int]:
    return [p for p in descendants(pid) if _parent(p) == pid]


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@pytest.mark.asyncio
async def test_documents_opened_together_are_all_verified(client: LanguageClient):
    uris = [f"file:///tmp/sealnet-lsp-test/p{i}.policy" for i in range(3)]
    for i, uri in enumerate(uris):
        open_document(client, POLICY.replace('policy "t"', f'policy "p{i}"'), uri=uri)
    pending = set(uris)
    while pending:
        params = await published(client, lambda p: p.uri in pending and any(c.startswith("V") for c in codes(p)))
        pending.discard(params.uri)
    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uris[0])))
    cleared = await published(client, lambda p: p.uri == uris[0])
    assert not cleared.diagnostics
