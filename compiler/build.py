"""Rendered C -> BPF ELF object bytes with clang, reproducibly.

Reproducible: the source is written under a fixed file name, build paths are
mapped away (-ffile-prefix-map / -fdebug-prefix-map), and nothing else of the
build directory or time enters the object; the same policy built in two
directories gives byte-identical objects (tests/test_codegen_build.py).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sealnet.compiler.codegen import INCLUDE_DIR, render
from sealnet.contracts.abi import AES_DRIVERS
from sealnet.contracts.errors import UserError
from sealnet.compiler.ir import Policy

MIN_CLANG = 15
CLANG_NAMES = ("clang", "clang-19", "clang-20", "clang-18", "clang-17", "clang-16", "clang-15")
SOURCE_NAME = "sealnet.bpf.c"  # fixed: the file name is recorded in debug info
SOURCE_ROOT = "/sealnet"  # build paths are mapped to this in the object
DEBIAN_PACKAGE = "clang-19"


@dataclass(frozen=True)
class Clang:
    path: str
    version: tuple[int, int, int]
    version_text: str

    def uapi_include_dir(self) -> str:
        """The target's multiarch UAPI directory (<asm/types.h>, which <linux/bpf.h> includes).

        -target bpf does not search it; Debian keeps it under the host
        triple's multiarch name, e.g. /usr/include/x86_64-linux-gnu."""
        return multiarch_include_dir(self.path)


def _clang_version(path: str) -> tuple[tuple[int, int, int], str] | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"clang version (\d+)\.(\d+)\.(\d+)", out)
    if not m:
        return None
    return (int(m[1]), int(m[2]), int(m[3])), out.splitlines()[0].strip()


# clang's architecture names that Debian's multiarch tuples spell otherwise.
_MULTIARCH_CPU = {"i386": "i386", "i486": "i386", "i586": "i386", "i686": "i386", "armv7": "arm", "armv7l": "arm"}


@functools.lru_cache(maxsize=None)
def multiarch_include_dir(clang_path: str) -> str:
    """/usr/include/<multiarch> of the clang's default (host) target, where <asm/types.h> is."""
    try:
        triple = subprocess.run([clang_path, "-dumpmachine"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        triple = ""
    parts = triple.split("-")  # cpu-vendor-os[-env], e.g. x86_64-pc-linux-gnu, aarch64-unknown-linux-gnu
    candidates = []
    if len(parts) >= 3:
        cpu = _MULTIARCH_CPU.get(parts[0], parts[0])
        candidates.append("-".join([cpu] + [p for p in parts[1:] if p not in ("pc", "unknown")]))
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        candidates.append(multiarch)
    for name in candidates:
        path = os.path.join("/usr/include", name)
        if os.path.isfile(os.path.join(path, "asm", "types.h")):
            return path
    raise UserError(f"no <asm/types.h> for target {triple or 'unknown'} under /usr/include/"
                    f"{{{','.join(candidates)}}}: install the Debian package `linux-libc-dev`")


def find_clang() -> Clang:
    """The first clang >= 15 on PATH (SEALNET_CLANG overrides), else a UserError."""
    override = os.environ.get("SEALNET_CLANG")
    names = (override,) if override else CLANG_NAMES
    seen: list[str] = []
    for name in names:
        path = shutil.which(name)
        if path is None:
            continue
        found = _clang_version(path)
        if found is None:
            continue
        version, text = found
        if version[0] >= MIN_CLANG:
            return Clang(path, version, text)
        seen.append(f"{path} is {version[0]}.{version[1]}")
    detail = f" ({'; '.join(seen)})" if seen else ""
    raise UserError(
        f"no clang >= {MIN_CLANG} found{detail}: install the Debian package `{DEBIAN_PACKAGE}`"
        " or set SEALNET_CLANG"
    )


def compile_c(source: str, clang: Clang | None = None, *, include_dir: Path = INCLUDE_DIR) -> bytes:
    """Compile one C translation unit to a BPF object (headers from `include_dir`)."""
    clang = clang or find_clang()
    with tempfile.TemporaryDirectory(prefix="sealnet-build-") as tmp:
        src = Path(tmp) / SOURCE_NAME
        obj = Path(tmp) / "sealnet.bpf.o"
        src.write_text(source, encoding="utf-8")
        cmd = [
            clang.path,
            "-target", "bpf",
            # BPF ISA v3 (kernel >= 5.1): 32-bit ALU and jumps, so ChaCha20's 32-bit words need no
            # masking after every add (about a fifth of its cost), and 32-bit compares are native.
            "-mcpu=v3",
            "-O2", "-g",
            "-std=gnu11",
            "-Wall", "-Werror",
            "-I", str(include_dir),
            "-idirafter", clang.uapi_include_dir(),
            f"-ffile-prefix-map={tmp}={SOURCE_ROOT}",
            f"-fdebug-prefix-map={tmp}={SOURCE_ROOT}",
            f"-ffile-prefix-map={include_dir}={SOURCE_ROOT}/include",
            f"-fdebug-prefix-map={include_dir}={SOURCE_ROOT}/include",
            "-fdebug-compilation-dir=" + SOURCE_ROOT,
            "-c", SOURCE_NAME,
            "-o", obj.name,
        ]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            # Generated code failing to compile is our bug, not the user's: keep the log.
            raise RuntimeError(f"clang failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return obj.read_bytes()


def build_object(policy: Policy, clang: Clang | None = None, *, aes_implementation: str = AES_DRIVERS[0]) -> bytes:
    """Render and compile the data plane of a checked policy."""
    return compile_c(render(policy, aes_implementation=aes_implementation), clang)
