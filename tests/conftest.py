"""Shared pytest wiring: the `kernel` marker gate and kernel-test fixtures.

Tests marked ``@pytest.mark.kernel`` need root, the bpf() syscall and network
namespaces. They are probed once per session (per xdist worker); when something
is missing the test is skipped with the reason, except under
SEALNET_REQUIRE_KERNEL=1 (set by .ci/run), where it fails: CI must never pass by
skipping the kernel half of the suite.

Tests marked ``@pytest.mark.bpf_lsm`` also need the bypass guard to run
(runtime/node_guard.py: BPF LSM active and accepting programs). Where it cannot,
they skip with the reason, or fail under SEALNET_REQUIRE_BPF_LSM=1; and the
session accepts the risk for every other sealing load (SEALNET_ALLOW_QDISC_BYPASS,
the environment's --allow-qdisc-bypass), so those still test what they test.
Where the guard runs, every sealing load of the suite runs guarded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from sealnet.compiler.build import multiarch_include_dir
from testbed import Topology, bpf_lsm_unavailable_reason

REQUIRE_KERNEL_ENV = "SEALNET_REQUIRE_KERNEL"
REQUIRE_BPF_LSM_ENV = "SEALNET_REQUIRE_BPF_LSM"
CLANG = os.environ.get("SEALNET_CLANG", "clang-19")

_kernel_reason: str | None = None
_kernel_probed = False


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated so the marker is known even when
    # pytest runs with another rootdir/config.
    config.addinivalue_line("markers", "kernel: needs root, BPF and network namespaces")
    config.addinivalue_line("markers", "long: long-running fuzz/property runs, deselected by default")
    config.addinivalue_line("markers", "bpf_lsm: needs the bypass guard (BPF LSM active and accepting programs)")
    if bpf_lsm_unavailable_reason() is not None:
        from sealnet.runtime.node import ALLOW_QDISC_BYPASS_ENV

        os.environ[ALLOW_QDISC_BYPASS_ENV] = "1"  # inherited by the CLI subprocesses the tests start



def _probe_kernel() -> str | None:
    """None when root, bpf() and netns all work; else the first missing piece."""
    if os.geteuid() != 0:
        return "kernel test needs root (euid is %d)" % os.geteuid()
    try:
        from sealnet.contracts import libbpf

        with libbpf.create_map(libbpf.MapType.ARRAY, 4, 8, 1, "sn_probe") as m:
            m.update(b"\0\0\0\0", (1).to_bytes(8, "little"))
            if m.lookup(b"\0\0\0\0") != (1).to_bytes(8, "little"):
                return "bpf() array map round trip returned a wrong value"
    except Exception as exc:  # any failure here means "no usable BPF"
        return f"bpf() syscall unusable: {exc}"
    try:
        from sealnet.runtime import netns

        name = netns.unique_name("sn-probe-")
        netns.create_netns(name)
        try:
            netns.ifindex("lo", name)
        finally:
            netns.delete_netns(name)
    except Exception as exc:
        return f"network namespaces unusable: {exc}"
    return None


def kernel_unavailable_reason() -> str | None:
    global _kernel_reason, _kernel_probed
    if not _kernel_probed:
        _kernel_reason = _probe_kernel()
        _kernel_probed = True
    return _kernel_reason


def _missing(reason: str) -> None:
    """Skip, or fail when the environment promises a full kernel."""
    if os.environ.get(REQUIRE_KERNEL_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_KERNEL_ENV}=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kernel") is None and item.get_closest_marker("bpf_lsm") is None:
        return
    reason = kernel_unavailable_reason()
    if reason is not None:
        _missing(reason)
    if item.get_closest_marker("bpf_lsm") is not None:
        reason = bpf_lsm_unavailable_reason()
        if reason is not None:
            if os.environ.get(REQUIRE_BPF_LSM_ENV) == "1":
                pytest.fail(f"{reason} ({REQUIRE_BPF_LSM_ENV}=1 forbids skipping)", pytrace=False)
            pytest.skip(f"bypass guard unavailable: {reason}")


@pytest.fixture
def topology() -> Iterator[Topology]:
    """A fresh testbed.Topology, torn down after the test (also on failure)."""
    topo = Topology()
    try:
        yield topo
    finally:
        topo.close()


def _multiarch_include() -> str:
    # <linux/bpf.h> includes <asm/types.h>, under the target's multiarch
    # directory, which -target bpf does not search: found as the build finds it.
    return multiarch_include_dir(shutil.which(CLANG) or CLANG)


@pytest.fixture
def bpf_compile(tmp_path: Path) -> Callable[..., bytes]:
    """Compile BPF C source with clang-19 and return the ELF object bytes.

    ``bpf_compile(source, name="prog", extra_args=())``; a compile error fails
    the test with clang's diagnostics. A missing clang skips (or fails under
    SEALNET_REQUIRE_KERNEL=1).
    """

    def compile_(source: str, name: str = "prog", extra_args: tuple[str, ...] = ()) -> bytes:
        if shutil.which(CLANG) is None:
            _missing(f"{CLANG} not found on PATH")
        src = tmp_path / f"{name}.bpf.c"
        obj = tmp_path / f"{name}.bpf.o"
        src.write_text(source)
        cmd = [
            CLANG,
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-Wall",
            "-Werror",
            "-I",
            _multiarch_include(),
            *extra_args,
            "-c",
            str(src),
            "-o",
            str(obj),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            pytest.fail(f"clang failed ({proc.returncode}):\n{proc.stderr}", pytrace=False)
        return obj.read_bytes()

    return compile_
