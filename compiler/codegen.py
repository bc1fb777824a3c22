"""Checked IR -> eBPF C source, by rendering bpf_templates/ with Jinja."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sealnet.compiler.ir import Policy
from sealnet.contracts.abi import AES_DRIVERS
from sealnet.contracts.manifest import SUITE_BY_CIPHER
from sealnet.compiler.tables import TableSet, build_tables

TEMPLATE_DIR = Path(str(resources.files("sealnet.bpf_templates")))
INCLUDE_DIR = TEMPLATE_DIR / "include"
MAIN_TEMPLATE = "datapath.bpf.c.j2"
SEAL_HEADER = "seal_datapath.h"


def seal_header_available() -> bool:
    return (INCLUDE_DIR / SEAL_HEADER).is_file()


def render(policy: Policy, tables: TableSet | None = None, *, with_seal: bool | None = None,
           aes_implementation: str = AES_DRIVERS[0]) -> str:
    """The complete C translation unit for this policy.

    The AES driver is compiled in, so it is part of the measured object: a
    node cannot be talked into the table-based implementation at load time."""
    import jinja2

    if aes_implementation not in AES_DRIVERS:
        raise ValueError(f"unknown AES implementation {aes_implementation!r}")

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    if with_seal is None:
        # The seal path is wired in only once the crypto engineer's header
        # defines seal_egress/seal_ingress; until then seal traffic is dropped.
        with_seal = seal_header_available()
    return env.get_template(MAIN_TEMPLATE).render(
        policy_name=policy.name.replace("*/", "* /"),
        policy_version=policy.version,
        t=tables if tables is not None else build_tables(policy),
        seal_header=SEAL_HEADER if with_seal else None,
        n_domains=len(policy.domains),
        aes_driver=aes_implementation,
        cipher=SUITE_BY_CIPHER[policy.cipher].name,
    )
