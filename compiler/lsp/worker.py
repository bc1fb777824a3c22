"""Verification in the background: a worker process, cancelled by killing it.

The server never waits for Z3. Each edit hands the document's text to a
worker process, which checks the whole policy, runs the verifier and proves
quick fixes with `diff`, sending each result back as soon as it has it. A new
edit cancels the job in flight by killing its worker (Z3 cannot be stopped
mid-query from Python without leaving half-answered checks behind); a spare
worker, already started and with the text already parsed, takes over at once.

Messages from a worker: ("ready",), then per job ("checked", job, diagnostics,
has_errors), ("verified", job, verdict, policy), ("fix", job, fix) for each
fix, ("done", job).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable

from sealnet.compiler.checker import check
from sealnet.compiler.diagnostics import Severity
from sealnet.compiler.lsp.document import FrontEnd
from sealnet.compiler.lsp.fixes import proved_fixes
from sealnet.compiler.lsp.verification import run_verifier

# Wait this long after an edit before starting a job: a burst of keystrokes
# then costs one verification, not one per key.
DEBOUNCE_S = 0.08


@dataclass(frozen=True)
class Job:
    id: int
    uri: str
    version: int | None
    text: str


# -- the worker process ---------------------------------------------------------------------
def serve(conn: Connection) -> None:
    """The worker's loop (in its own process)."""
    # stdout is the editor's JSON-RPC stream in the parent: nothing may reach it.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    front_ends: dict[str, FrontEnd] = {}
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        kind, job = message
        front_end = front_ends.setdefault(job.uri, FrontEnd(job.uri))
        if kind == "warm":
            front_end.parse_only(job.text)
            front_end.analyse(job.text, check_body=False)
            continue
        try:
            _run(conn, front_end, job)
        except (BrokenPipeError, EOFError):
            return
        except Exception:  # a verifier bug must not take the editor's server down
            traceback.print_exc()
            conn.send(("failed", job, traceback.format_exc(limit=3)))
        conn.send(("done", job))


def _run(conn: Connection, front_end: FrontEnd, job: Job) -> None:
    analysis = front_end.analyse(job.text, job.version, check_body=False)
    if analysis.syntax:
        conn.send(("checked", job, [], True))
        return
    policy, diagnostics = check(analysis.tree)
    errors = policy is None or any(d.severity is Severity.ERROR for d in diagnostics)
    conn.send(("checked", job, diagnostics, errors))
    if errors or policy is None:
        return
    verdict = run_verifier(policy)
    conn.send(("verified", job, verdict, policy))
    for fix in proved_fixes(front_end, analysis, policy, verdict.findings):
        conn.send(("fix", job, fix))


# -- the server's side ------------------------------------------------------------------------
class Worker:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child,), daemon=True, name="policyc-verifier")
        self.process.start()
        child.close()
        self.ready = False

    def send(self, kind: str, job: Job) -> None:
        self.conn.send((kind, job))

    def recv(self) -> Any:
        return self.conn.recv()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class Background:
    """One verification at a time; a new submission cancels the one in flight."""

    def __init__(self, on_message: Callable[[tuple], None], log: Callable[[str], None]):
        self.on_message = on_message
        self.log = log
        self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="policyc-recv")
        self._active: Worker | None = None
        self._spare: Worker | None = None
        self._task: asyncio.Task | None = None
        self._job: Job | None = None
        self._next_id = 1
        self.cancelled = 0

    def submit(self, uri: str, version: int | None, text: str) -> Job:
        job = Job(self._next_id, uri, version, text)
        self._next_id += 1
        self.cancel("by a newer edit")
        self._job = job
        self._task = asyncio.get_running_loop().create_task(self._run(job))
        return job

    def cancel(self, why: str) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            if self._job is not None:
                self.cancelled += 1
                self.log(f"verification of {self._job.uri} version {self._job.version} cancelled {why}")
        self._task = None
        if self._active is not None:  # it may be half-way through a job: stop it
            self._active.kill()
            self._active = None

    def _worker(self) -> Worker:
        if self._active is None:
            self._active, self._spare = (self._spare or Worker()), None
        if self._spare is None:
            self._spare = Worker()
        return self._active

    async def _run(self, job: Job) -> None:
        await asyncio.sleep(DEBOUNCE_S)
        worker = self._worker()
        loop = asyncio.get_running_loop()
        try:
            worker.send("job", job)
            if self._spare is not None:
                self._spare.send("warm", job)
            while True:
                message = await loop.run_in_executor(self._threads, worker.recv)
                if message[0] == "ready":
                    continue
                self.on_message(message)
                if message[0] == "done":
                    return
        except (EOFError, OSError, BrokenPipeError):
            if self._active is worker:  # it died on its own: start afresh next time
                worker.kill()
                self._active = None

    def close(self) -> None:
        self.cancel("at shutdown")
        for worker in (self._active, self._spare):
            if worker is not None:
                worker.kill()
        self._active = self._spare = None
        self._threads.shutdown(wait=False, cancel_futures=True)
