"""Verification in the background: a worker process, cancelled by killing it.

The server never waits for Z3. Each edit hands the document's text to a
worker process, which checks the whole policy, runs the verifier and proves
quick fixes with `diff`, sending each result back as soon as it has it. A new
edit cancels the job in flight by killing its worker (Z3 cannot be stopped
mid-query from Python without leaving half-answered checks behind); a spare
worker, already started and with the text already parsed, takes over at once.

Messages from a worker: ("ready",), then per job ("checked", job, diagnostics,
has_errors), ("verified", job, verdict, policy), ("fix", job, fix) for each
fix, ("done", job). Workers fork from a forkserver that has imported the
verifier, so a replacement starts in milliseconds.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.context
import os
import sys
import threading
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Callable

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
            front_end.analyse(job.text, check=False)  # parse now: the job may come here next
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
    analysis = front_end.analyse(job.text, job.version, check=False)  # the full check follows
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
    # Stop proving fixes as soon as a newer job waits: its text supersedes this one.
    for fix in proved_fixes(front_end, analysis, policy, verdict.findings, stop=conn.poll):
        conn.send(("fix", job, fix))


# -- the server's side ------------------------------------------------------------------------
def _context() -> multiprocessing.context.BaseContext:
    """Workers fork from a server process that has imported the verifier once: a new one starts at once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["sealnet.compiler.lsp.worker"])
    return context


class Worker:
    """A worker process and the one thread that reads its messages into the event loop."""

    def __init__(self, deliver: Callable[["Worker", tuple], None], loop: asyncio.AbstractEventLoop):
        context = _context()
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child,), daemon=True, name="policyc-verifier")
        self.process.start()
        child.close()
        self._reader = threading.Thread(target=self._read, args=(deliver, loop), daemon=True,
                                        name="policyc-verifier-reader")
        self._reader.start()

    def _read(self, deliver: Callable[["Worker", tuple], None], loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                message = ("exited", None)
            try:
                loop.call_soon_threadsafe(deliver, self, message)
            except RuntimeError:  # the loop has closed
                return
            if message[0] == "exited":
                return

    def send(self, kind: str, job: Job) -> bool:
        try:
            self.conn.send((kind, job))
            return True
        except (OSError, BrokenPipeError):
            return False

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)


class Background:
    """Verification jobs, one at a time, the latest text of each document first come first served.

    A newer edit of the document being checked or verified kills that job's
    worker (the spare takes over at once). Another document's job waits until
    the current one has its findings out; a job that only proves fixes gives
    way to any newer job: its worker sees the job waiting and stops.
    """

    def __init__(self, on_message: Callable[[tuple], None], log: Callable[[str], None]):
        self.on_message = on_message
        self.log = log
        self._active: Worker | None = None
        self._spare: Worker | None = None
        self._job: Job | None = None  # sent to the active worker
        self._phase = "idle"  # of that job: idle | checking | verifying | fixing
        self._queue: dict[str, Job] = {}  # the latest text of each document waiting, in order
        self._timer: asyncio.TimerHandle | None = None
        self._next_id = 1
        self.cancelled = 0

    @property
    def _busy(self) -> bool:
        """The active job must not be interrupted by another document's job."""
        return self._phase in ("checking", "verifying")

    def submit(self, uri: str, version: int | None, text: str) -> Job:
        job = Job(self._next_id, uri, version, text)
        self._next_id += 1
        self._queue.pop(uri, None)
        self._queue[uri] = job
        if self._job is not None and self._job.uri == uri:
            self._stop("by a newer edit")
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(DEBOUNCE_S, self._pump)
        return job

    def cancel(self, uri: str, why: str) -> None:
        """Forget a document's jobs (it closed)."""
        self._queue.pop(uri, None)
        if self._job is not None and self._job.uri == uri:
            self._stop(why)

    def _stop(self, why: str) -> None:
        """Stop the active job: kill its worker if it is still checking or verifying."""
        assert self._job is not None
        if self._phase != "idle":
            self.cancelled += 1
            self.log(f"verification of {self._job.uri} version {self._job.version} cancelled {why}")
        if self._busy and self._active is not None:
            self._active.kill()  # Z3 cannot be stopped mid-query: stop the process
            self._active = None
        self._job, self._phase = None, "idle"

    def prestart(self) -> None:
        """Start the workers now, so that the first verification does not wait for one to start."""
        self._worker()

    def _worker(self) -> Worker:
        loop = asyncio.get_running_loop()
        if self._active is None:
            self._active, self._spare = (self._spare or Worker(self._deliver, loop)), None
        if self._spare is None:
            self._spare = Worker(self._deliver, loop)
        return self._active

    def _pump(self) -> None:
        """Start the next waiting job unless the active one must finish first."""
        self._timer = None
        if self._busy or not self._queue:
            return
        job = self._queue.pop(next(iter(self._queue)))
        worker = self._worker()
        if not worker.send("job", job):
            worker.kill()
            self._active = None
            self._worker().send("job", job)
        self._job, self._phase = job, "checking"
        if self._spare is not None:
            self._spare.send("warm", job)

    def _deliver(self, worker: Worker, message: tuple) -> None:
        kind = message[0]
        if kind == "exited":
            if worker is self._spare:
                self._spare = None
            if worker is self._active:
                self._active = None
                if self._phase != "idle" and self._job is not None:
                    self.log(f"the verifier process exited while verifying version {self._job.version}")
                self._job, self._phase = None, "idle"
                self._pump()
            return
        if kind == "ready" or worker is not self._active:
            return
        job = message[1]
        if self._job is None or job.id != self._job.id:
            return  # superseded
        self._phase = {"checked": "verifying", "verified": "fixing", "done": "idle"}.get(kind, self._phase)
        if kind == "checked" and message[3]:
            self._phase = "fixing"  # errors: nothing to verify, the worker is about to say done
        self.on_message(message)
        if kind == "done":
            self._job = None
        if kind in ("checked", "verified", "done") and self._timer is None:
            self._pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._queue.clear()
        if self._job is not None:
            self._stop("at shutdown")
        for worker in (self._active, self._spare):
            if worker is not None:
                worker.kill()
        self._active = self._spare = None
