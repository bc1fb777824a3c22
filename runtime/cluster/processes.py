"""The processes a cluster starts: spawned in a host's network namespace,
recorded before anything waits on them, found again by pid and command line
or by the marker in their environment, stopped all at once."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from sealnet.runtime.cluster.state import ClusterState, Process
from sealnet.runtime.cluster.topology import Host
from sealnet.runtime.netns import NETNS_RUN_DIR

STOP_SECONDS = 10.0
CLUSTER_ENV = "SEALNET_CLUSTER"  # in the environment of every process a cluster starts


# nsenter switches only the network namespace: `ip netns exec` would also give
# the process a private /sys, hiding /sys/fs/bpf where the node agent pins.
_NSENTER = "nsenter"


def start(state: ClusterState, role: str, host: Host, argv: list[str], *, in_netns: bool = False,
          env: dict[str, str] | None = None, serves: list[str] | None = None) -> Process:
    """Start `argv`, inside the host's namespace when `in_netns`, and record it (with the
    nodes it serves, when it is a node agent serving several)."""
    logs = state.file("logs")
    os.makedirs(logs, exist_ok=True)
    log = os.path.join(logs, f"{role}-{host.name}.log")
    spawn = [_NSENTER, f"--net={os.path.join(NETNS_RUN_DIR, host.netns)}", *argv] if in_netns else argv
    with open(log, "ab") as out:
        # The marker lets `down` find it even if we die between this spawn and the save below.
        proc = subprocess.Popen(spawn, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                env={**os.environ, **(env or {}), CLUSTER_ENV: state.cluster_id})
    record = Process(role, host.name, proc.pid, spawn, log, list(serves or []))
    state.processes.append(record)
    state.save()
    return record


def _ours(process: Process) -> bool:
    """The pid still runs the command we started (pids are reused). A script's
    interpreter comes first in /proc/PID/cmdline, so compare the tail; a
    command started in a namespace is `nsenter --net=NS argv` until nsenter execs it."""
    wanted = [process.argv]
    if process.argv[0] == _NSENTER:
        wanted.append(process.argv[2:])
    try:
        with open(f"/proc/{process.pid}/cmdline", "rb") as fh:
            running = [a.decode(errors="replace") for a in fh.read().split(b"\0")[:-1]]
            return any(running[-len(want):] == want for want in wanted)
    except OSError:
        return False


def alive(process: Process) -> bool:
    if not _ours(process):
        return False
    try:
        with open(f"/proc/{process.pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def exited(pid: int) -> bool:
    """Our child `pid` has ended (reaped here). Not `alive()`: while nsenter
    execs the real program, its command line is briefly neither."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return not os.path.exists(f"/proc/{pid}")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def marked_processes(cluster_id: str) -> list[Process]:
    """Processes that carry this cluster's marker in their environment."""
    marker = f"{CLUSTER_ENV}={cluster_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if marker not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0")[:-1]]
        except OSError:
            continue
        if argv:
            found.append(Process("unrecorded", "?", int(entry), argv, ""))
    return found


def stop_all(processes: list[Process], timeout: float = STOP_SECONDS) -> int:
    """SIGTERM to every one still ours, then wait for all; SIGKILL those left
    after `timeout`. Returns how many were running."""
    running = [p for p in processes if alive(p)]
    for p in running:
        try:
            os.kill(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    left = list(running)
    while left and time.monotonic() < deadline:
        for p in list(left):
            _reap(p.pid)
            if not alive(p):
                left.remove(p)
        if left:
            time.sleep(0.02)
    for p in left:
        stop(p, timeout=0)
    return len(running)


def stop(process: Process, timeout: float = STOP_SECONDS) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True when it was running."""
    if not alive(process):
        return False
    try:
        os.kill(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(process.pid)
        if not alive(process):
            return True
        time.sleep(0.02)
    try:
        os.kill(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    while alive(process):
        _reap(process.pid)
        time.sleep(0.02)
    return True


def last_line(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            lines = [ln for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][-300:] if lines else "no output"
