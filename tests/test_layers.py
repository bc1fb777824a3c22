"""The tree's structure: layers kept (import-linter), every module placed in a
layer, and one package namespace in the built wheel.

The repository keeps its top-level folders (compiler/, runtime/, ...) while the
installed package is `sealnet.*`; import-linter reads files, so it runs over a
tree of links that has the installed shape.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"contracts": "contracts", "compiler": "compiler", "runtime": "runtime", "grammar": "grammar",
           "bpf_templates": "bpf_templates"}


def _config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def _layer_modules() -> list[set[str]]:
    contract = next(c for c in _config()["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [{m.strip() for m in layer.replace("|", ":").split(":") if m.strip()} for layer in contract["layers"]]


def _modules() -> set[str]:
    """Every module of the installed package, by its installed name."""
    found = set()
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.add(".".join(("sealnet",) + parts))
    return found


def _placed(module: str, layers: list[set[str]]) -> bool:
    return any(module == m or module.startswith(m + ".") for layer in layers for m in layer)


@pytest.fixture(scope="module")
def installed_shape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("shape")
    (top / "sealnet").mkdir()
    for name, folder in FOLDERS.items():
        os.symlink(ROOT / folder, top / "sealnet" / name)
    return top


def test_import_layers_are_kept(installed_shape: Path) -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint_imports), str(ROOT / "pyproject.toml")], cwd=installed_shape,
                          env={**os.environ, "PYTHONPATH": str(installed_shape)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_every_module_is_in_a_layer() -> None:
    layers = _layer_modules()
    package_roots = {"sealnet." + name for name in FOLDERS}
    unplaced = sorted(m for m in _modules() - package_roots if not _placed(m, layers))
    assert unplaced == [], f"add these modules to a layer in pyproject.toml [tool.importlinter]: {unplaced}"


def test_layers_name_no_missing_module() -> None:
    modules = _modules()
    listed = {m for layer in _layer_modules() for m in layer}
    assert sorted(m for m in listed if m not in modules) == []


def _function_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module and inner.module.startswith("sealnet"):
                    out.append(f"{path.relative_to(ROOT)}:{inner.lineno} {inner.module}")
    return out


def test_no_sealnet_import_hides_in_a_function_below_the_command_line() -> None:
    """Only the command-line layer defers imports (to keep `--help` fast)."""
    top_layer = _layer_modules()[0]
    hidden = []
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            module = ".".join(("sealnet",) + path.relative_to(ROOT).with_suffix("").parts)
            if not _placed(module, [top_layer]):
                hidden += _function_level_imports(path)
    assert hidden == []


def test_wheel_installs_one_namespace_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=240)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("sealnet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"sealnet", next(t for t in tops if t.endswith(".dist-info"))}
    for module in _modules():
        path = module.replace(".", "/")
        assert f"{path}.py" in names or f"{path}/__init__.py" in names, f"{module} missing from the wheel"
    assert "sealnet/grammar/policy.lark" in names
    assert any(n.startswith("sealnet/bpf_templates/include/") and n.endswith(".h") for n in names)

    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                              str(wheel)], capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stderr[-3000:]
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    policy = workdir / "p.policy"
    policy.write_text((ROOT / "examples" / "genomics.policy").read_text())
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = subprocess.run([sys.executable, "-c", "import sealnet.compiler, sealnet.runtime; "
                            "print(sealnet.compiler.__file__); print(sealnet.runtime.__file__)"],
                           cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert all(line.startswith(str(site)) for line in probe.stdout.split()), probe.stdout
    for script, args in (("policyc", ["lint", "--no-verify", str(policy)]), ("sealnet", ["--help"])):
        run = subprocess.run([sys.executable, str(site / "bin" / script), *args], cwd=workdir, env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"{script}: {run.stdout}{run.stderr}"
    top_level = subprocess.run([sys.executable, "-c", "import compiler"], cwd=workdir,
                               env={**env, "PYTHONSAFEPATH": "1"}, capture_output=True, text=True, timeout=60)
    assert top_level.returncode != 0  # nothing installed as a bare `compiler`
