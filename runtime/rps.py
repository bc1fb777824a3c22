"""Receive packet steering on an interface: each flow on one CPU, flows spread.

Why: a device without multiple hardware queues (veth, many virtual NICs)
delivers a packet through the backlog of the CPU that handled it, so one TCP
flow whose segments are sent from two CPUs reaches the receiver out of order
(docs: runtime/interface.py). With rps_cpus covering every CPU the kernel
hashes each flow to one CPU's backlog: in order per flow, parallel across flows.

sysfs shows the devices of the network namespace it was mounted in, so for
another namespace the files are read and written by a child that `ip netns
exec` starts (it mounts that namespace's sysfs).
"""

from __future__ import annotations

import subprocess

from sealnet.runtime.netns import run

QUEUES_DIR = "/sys/class/net/{iface}/queues"
ONLINE_CPUS = "/sys/devices/system/cpu/online"
# Prints "queue mask" per rx queue, then writes the new mask when one is given.
_SCRIPT = (
    'cd "$1" || exit 1; shift; for q in rx-*; do printf "%s %s\\n" "$q" "$(cat "$q/rps_cpus")"; done; '
    'while [ $# -ge 2 ]; do printf %s "$2" > "$1/rps_cpus" || exit 1; shift 2; done'
)


class RpsError(OSError):
    pass


def all_cpus_mask() -> str:
    """rps_cpus text selecting every online CPU."""
    with open(ONLINE_CPUS) as f:
        return cpu_list_mask(f.read())


def cpu_list_mask(cpu_list: str) -> str:
    """A kernel CPU list ("0-3,8") as rps_cpus text: comma-separated 32-bit hex groups, highest first."""
    mask = 0
    for part in cpu_list.strip().split(","):
        lo, _, hi = part.partition("-")
        for cpu in range(int(lo), int(hi or lo) + 1):
            mask |= 1 << cpu
    groups = []
    while True:
        groups.append(f"{mask & 0xFFFFFFFF:08x}")
        mask >>= 32
        if not mask:
            break
    return ",".join(reversed(groups))


def mask_cpus(text: str) -> int:
    """The CPU bitmask an rps_cpus text names (the kernel pads groups to its CPU count)."""
    return int(text.replace(",", "") or "0", 16)


def _queues(iface: str, netns: str | None, writes: dict[str, str]) -> dict[str, str]:
    """Each rx queue's rps_cpus before `writes` (queue -> mask) are made."""
    if not iface or "/" in iface or iface in (".", ".."):
        raise ValueError(f"invalid interface name {iface!r}")
    argv = ["sh", "-c", _SCRIPT, "rps", QUEUES_DIR.format(iface=iface)]
    for queue, mask in writes.items():
        argv += [queue, mask]
    try:
        if netns is None:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        else:
            done = run(netns, argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RpsError(f"rps_cpus of {iface!r}: {exc}") from exc
    if done.returncode != 0:
        raise RpsError(f"rps_cpus of {iface!r}: {done.stderr.strip() or 'failed'}")
    before = {}
    for line in done.stdout.splitlines():
        queue, _, mask = line.partition(" ")
        before[queue] = mask.strip()
    return before


def read(iface: str, netns: str | None = None) -> dict[str, str]:
    """rps_cpus of every rx queue (queue name -> mask text)."""
    return _queues(iface, netns, {})


def spread_flows(iface: str, netns: str | None = None) -> dict[str, str]:
    """Steer every rx queue's flows over all CPUs; returns the masks before."""
    mask = all_cpus_mask()
    return _queues(iface, netns, {q: mask for q in read(iface, netns)})


def restore(iface: str, netns: str | None, previous: dict[str, str]) -> None:
    _queues(iface, netns, dict(previous))

