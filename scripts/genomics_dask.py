"""The genomics workflow of examples/genomics.policy as a Dask distributed pipeline.

Stages, placed as the policy's workflow says:
  ingest (hospital workers, port of stage `ingest`): synthesise each sample's
      sequencing reads from a reference genome, with 1 % substitutions;
  align (lab workers, port of stage `align`): map every read back onto the
      reference with a k-mer index and count mismatches and per-bin coverage;
  report (the scheduler's port, stage `report`, in the hospital): aggregate
      the lab's results on a hospital worker; the client there checks them.

Real data crosses the domains: the reference and every sample's reads go
hospital -> lab, the alignments lab -> hospital. The check: every read maps
back to the position it was drawn from, and the aggregate equals the same
pipeline computed in the client's own process.

Two halves:
  `deploy(...)` starts `dask scheduler` / `dask worker` processes inside the
  cluster's namespaces (plaintext `tcp://` or Dask's own `tls://`);
  `python scripts/genomics_dask.py run --scheduler ADDR ...` is the client, run
  inside a hospital namespace; it prints one JSON line with the makespan.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import ipaddress
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent
PYTHON = sys.executable

REFERENCE_BASES = 120_000
READ_LENGTH = 100
KMER = 20
BIN = 1_000  # coverage bin width, bases
MUTATION_RATE = 0.01
WORKFLOW = "genomics"


# --------------------------------------------------------------------------- the pipeline's tasks


def make_reference(seed: int, bases: int = REFERENCE_BASES) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.choice(b"ACGT") for _ in range(bases))


def ingest(sample: int, reference: bytes, reads: int, seed: int) -> bytes:
    """One sample's reads: fixed-length substrings of the reference, mutated.
    The read's true position travels with it (4 bytes, big-endian) so that the
    alignment can be checked."""
    rng = random.Random(seed * 1_000_003 + sample)
    out = bytearray()
    for _ in range(reads):
        pos = rng.randrange(len(reference) - READ_LENGTH)
        read = bytearray(reference[pos : pos + READ_LENGTH])
        for i in range(READ_LENGTH):
            if rng.random() < MUTATION_RATE:
                read[i] = b"ACGT"[(b"ACGT".index(read[i]) + rng.randrange(1, 4)) % 4]
        out += pos.to_bytes(4, "big") + read
    return bytes(out)


@lru_cache(maxsize=2)
def _kmer_index(reference: bytes) -> dict[bytes, int]:
    index: dict[bytes, int] = {}
    for pos in range(len(reference) - KMER + 1):
        index.setdefault(reference[pos : pos + KMER], pos)
    return index


def align(reads: bytes, reference: bytes) -> dict[str, Any]:
    """Map each read by exact k-mer seeds at a few offsets, keep the placement
    with the fewest mismatches."""
    index = _kmer_index(reference)
    record = 4 + READ_LENGTH
    coverage = [0] * (len(reference) // BIN + 1)
    aligned = correct = mismatches = 0
    for off in range(0, len(reads), record):
        truth = int.from_bytes(reads[off : off + 4], "big")
        read = reads[off + 4 : off + record]
        best: tuple[int, int] | None = None
        for seed_at in range(0, READ_LENGTH - KMER + 1, KMER):
            hit = index.get(read[seed_at : seed_at + KMER])
            if hit is None or hit - seed_at < 0 or hit - seed_at + READ_LENGTH > len(reference):
                continue
            start = hit - seed_at
            window = reference[start : start + READ_LENGTH]
            diff = sum(a != b for a, b in zip(read, window))
            if best is None or diff < best[1]:
                best = (start, diff)
        if best is None:
            continue
        aligned += 1
        correct += best[0] == truth
        mismatches += best[1]
        coverage[best[0] // BIN] += 1
    return {"reads": len(reads) // record, "aligned": aligned, "correct": correct,
            "mismatches": mismatches, "coverage": coverage}


def report(*alignments: dict[str, Any]) -> dict[str, Any]:
    coverage = [sum(col) for col in zip(*(a["coverage"] for a in alignments))]
    return {
        "samples": len(alignments),
        "reads": sum(a["reads"] for a in alignments),
        "aligned": sum(a["aligned"] for a in alignments),
        "correct": sum(a["correct"] for a in alignments),
        "mismatches": sum(a["mismatches"] for a in alignments),
        "coverage": coverage,
    }


def local_pipeline(samples: int, reads: int, seed: int) -> dict[str, Any]:
    reference = make_reference(seed)
    return report(*(align(ingest(s, reference, reads, seed), reference) for s in range(samples)))


# --------------------------------------------------------------------------- the client


def run_client(scheduler: str, ingest_workers: Sequence[str], align_workers: Sequence[str], *, samples: int,
               reads: int, seed: int, tls: str | None, check: bool, timeout: float) -> dict[str, Any]:
    from distributed import Client

    # Submit the functions of the importable module, not of __main__, so they
    # are pickled by reference and every worker runs the same code.
    tasks = importlib.import_module("genomics_dask")
    security = _client_security(tls) if tls else None
    with Client(scheduler, security=security, timeout=timeout) as client:
        client.wait_for_workers(len(ingest_workers) + len(align_workers), timeout=timeout)
        started = time.perf_counter()
        # Every task is pinned to its stage's workers: the policy decides which
        # domain may see which data, so the scheduler may not move it elsewhere.
        reference = client.submit(tasks.make_reference, seed, workers=list(ingest_workers[:1]), pure=False)
        alignments = []
        for s in range(samples):
            sample_reads = client.submit(tasks.ingest, s, reference, reads, seed,
                                         workers=[ingest_workers[s % len(ingest_workers)]],
                                         allow_other_workers=False, pure=False)
            alignments.append(client.submit(tasks.align, sample_reads, reference,
                                            workers=[align_workers[s % len(align_workers)]],
                                            allow_other_workers=False, pure=False))
        final = client.submit(tasks.report, *alignments, workers=list(ingest_workers[:1]),
                              allow_other_workers=False, pure=False)
        result = final.result(timeout=timeout)
        makespan = time.perf_counter() - started
    out: dict[str, Any] = {"makespan_s": makespan, "samples": result["samples"], "reads": result["reads"],
                           "aligned": result["aligned"], "correct": result["correct"],
                           "mismatches": result["mismatches"]}
    out["checked"] = None
    if check:
        # Same answer as the pipeline run in one process, and the alignment
        # put (nearly) every read back where it was drawn from.
        out["checked"] = result == local_pipeline(samples, reads, seed) and result["correct"] >= 0.99 * result["reads"]
    return out


def _client_security(tls_dir: str) -> Any:
    from distributed.security import Security

    d = Path(tls_dir)
    return Security(tls_ca_file=str(d / "ca.pem"), tls_client_cert=str(d / "node.pem"),
                    tls_client_key=str(d / "node.key"), require_encryption=True)


# --------------------------------------------------------------------------- deployment in the namespaces


def stage_port(policy: Any, stage: str) -> int:
    """The first port the policy gives a workflow stage (the one fact shared
    by the policy, the data plane and the Dask processes)."""
    for workflow in policy.workflows:
        if workflow.name == WORKFLOW:
            for s in workflow.stages:
                if s.name == stage:
                    return int(s.ports[0][0])
    raise KeyError(f"{WORKFLOW}.{stage}")


@dataclass
class Deployment:
    scheduler: str
    ingest_workers: list[str]
    align_workers: list[str]
    client_netns: str
    tls_dir: str | None
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        # Workers first: a worker whose scheduler vanished keeps retrying it.
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.processes.clear()

    def run(self, *, samples: int, reads: int, seed: int = 7, check: bool = True,
            timeout: float = 120.0) -> dict[str, Any]:
        argv = [PYTHON, str(SCRIPTS / "genomics_dask.py"), "run", "--scheduler", self.scheduler,
                "--ingest", ",".join(self.ingest_workers), "--align", ",".join(self.align_workers),
                "--samples", str(samples), "--reads", str(reads), "--seed", str(seed),
                "--timeout", str(timeout)]
        if self.tls_dir:
            argv += ["--tls", self.tls_dir]
        if not check:
            argv.append("--no-check")
        proc = subprocess.run(["ip", "netns", "exec", self.client_netns, *argv], capture_output=True,
                              text=True, timeout=timeout + 60, env=_env())
        if proc.returncode != 0:
            raise RuntimeError(f"dask client failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Workers import this module by name, so tasks are pickled by reference
    # and each worker keeps its own k-mer index cache.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SCRIPTS), env.get("PYTHONPATH", "")) if p)
    env.setdefault("DASK_DISTRIBUTED__WORKER__DAEMON", "False")
    return env


def _dask(netns: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(["ip", "netns", "exec", netns, PYTHON, "-m", "distributed.cli." + argv[0], *argv[1:]],
                                stdout=out, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)


def make_tls(directory: Path, addresses: Sequence[str]) -> None:
    """A private CA and one certificate for every address: what a Dask user
    who turns on `tls://` sets up."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "genomics dask CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "genomics")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "node.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / "node.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)


def deploy(layout: Any, policy: Any, log_dir: Path, *, tls: bool = False) -> Deployment:
    """Scheduler on the first hospital node (stage `report`'s port), one
    worker per hospital node on `ingest`'s port and per lab node on `align`'s."""
    hospital = [h for h in layout.hosts if h.domain == "hospital" and h.role == "node"]
    lab = [h for h in layout.hosts if h.domain == "lab" and h.role == "node"]
    proto = "tls" if tls else "tcp"
    log_dir.mkdir(parents=True, exist_ok=True)
    tls_dir = None
    tls_args: list[str] = []
    if tls:
        tls_dir = str(log_dir / "tls")
        make_tls(Path(tls_dir), [h.address for h in hospital + lab])
        tls_args = ["--tls-ca-file", f"{tls_dir}/ca.pem", "--tls-cert", f"{tls_dir}/node.pem",
                    "--tls-key", f"{tls_dir}/node.key"]
    sched_port, ingest_port, align_port = (stage_port(policy, s) for s in ("report", "ingest", "align"))
    scheduler = f"{proto}://{hospital[0].address}:{sched_port}"
    dep = Deployment(scheduler, [f"{proto}://{h.address}:{ingest_port}" for h in hospital],
                     [f"{proto}://{h.address}:{align_port}" for h in lab], hospital[0].netns, tls_dir, log_dir)
    try:
        dep.processes.append(_dask(hospital[0].netns, ["dask_scheduler", "--host", hospital[0].address,
                                                       "--port", str(sched_port), "--protocol", proto,
                                                       "--no-dashboard", *tls_args],
                                   log_dir / "scheduler.log"))
        for hosts, port in ((hospital, ingest_port), (lab, align_port)):
            for h in hosts:
                dep.processes.append(_dask(h.netns, ["dask_worker", scheduler, "--host", h.address,
                                                     "--worker-port", str(port), "--no-nanny", "--nthreads", "1",
                                                     "--no-dashboard", "--name", h.name, "--memory-limit", "0",
                                                     *tls_args], log_dir / f"worker-{h.name}.log"))
    except BaseException:
        dep.stop()
        raise
    return dep


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the pipeline as a client of a running scheduler")
    run.add_argument("--scheduler", required=True)
    run.add_argument("--ingest", required=True, help="comma-separated hospital worker addresses")
    run.add_argument("--align", required=True, help="comma-separated lab worker addresses")
    run.add_argument("--samples", type=int, default=8)
    run.add_argument("--reads", type=int, default=2000)
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--tls", metavar="DIR")
    run.add_argument("--no-check", dest="check", action="store_false")
    run.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    result = run_client(args.scheduler, args.ingest.split(","), args.align.split(","), samples=args.samples,
                        reads=args.reads, seed=args.seed, tls=args.tls, check=args.check, timeout=args.timeout)
    print(json.dumps(result))
    return 0 if result["checked"] in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
