"""The layer order of docs/architecture.md holds: nothing imports upward, the IR stays light.

Every ``import`` statement of the library is read (also the ones inside functions: a lazy import
upward is still an upward dependency), mapped to its package's layer, and compared.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"spikeflow": ROOT / "spikeflow", "spikeflow.backends": ROOT / "backends", "spikeflow.datasets": ROOT / "datasets"}

# module prefix -> layer (the longest matching prefix decides); docs/architecture.md explains each
LAYERS = {
    "spikeflow.errors": 0, "spikeflow._atomic": 0, "spikeflow._checked_files": 0, "spikeflow._version": 0, "spikeflow.plots": 0,
    "spikeflow._threads": 0, "spikeflow._progress": 0,  # thread settings and progress bars: used by every layer
    "spikeflow.ir": 1,
    "spikeflow.io": 2, "spikeflow.datasets": 2,
    "spikeflow.backends": 3,  # the registry, input checks, results, export folders, numba simulators
    "spikeflow.torch": 4,
    "spikeflow.backends.torch_backend": 5, "spikeflow.backends.brian2_backend": 5,
    "spikeflow.train": 6, "spikeflow.models": 6, "spikeflow.convert": 6,
    "spikeflow.continual": 7, "spikeflow.exit": 7, "spikeflow.report": 7,
    "spikeflow.models.retrain": 8,  # retrains the pretrained models by running their recipes through the pipeline
    "spikeflow.workflows": 8, "spikeflow.cli": 8, "spikeflow.pipeline": 8, "spikeflow.__main__": 8, "spikeflow": 8,
}
# backends/ subpackages other than numba are adapters and hardware targets: above spikeflow.torch
BACKEND_BASE = ("spikeflow.backends.numba", "spikeflow.backends.capabilities", "spikeflow.backends.inputs",
                "spikeflow.backends.result", "spikeflow.backends.export_folder")

PEERS = {"snntorch", "norse", "nirtorch", "sinabs", "rockpool", "lava"}
FORBIDDEN = {  # module prefix -> third-party packages it must never import
    "spikeflow.ir": {"torch", "numba", "h5py", "nir", "brian2", "tonic", "matplotlib"} | PEERS,
    "spikeflow.backends.numba": {"torch"} | PEERS,
}


def layer_of(module: str) -> int:
    if module.startswith("spikeflow.backends.") and not module.startswith(BACKEND_BASE) and module not in LAYERS:
        head = ".".join(module.split(".")[:3])
        return LAYERS.get(head, 5)
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def modules():
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            yield name, path


def imports(name: str, path: Path):
    """(imported module, line) of every import in the file, relative imports resolved."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target, node.lineno
            for alias in node.names:  # "from spikeflow import demo" imports the module spikeflow.workflows
                yield f"{target}.{alias.name}", node.lineno


ALL = list(modules())


def test_every_module_has_a_layer():
    assert ALL and all(isinstance(layer_of(name), int) for name, _ in ALL)


@pytest.mark.parametrize("name,path", ALL, ids=[n for n, _ in ALL])
def test_no_import_goes_upward(name, path):
    own = layer_of(name)
    known = {n for n, _ in ALL}
    for target, line in imports(name, path):
        if not target.startswith("spikeflow") or target not in known:
            continue
        assert layer_of(target) <= own, (
            f"{path.relative_to(ROOT)}:{line}: {name} (layer {own}) imports {target} (layer {layer_of(target)}); "
            "see docs/architecture.md for the order")


@pytest.mark.parametrize("prefix", sorted(FORBIDDEN))
def test_light_layers_import_no_heavy_package(prefix):
    for name, path in ALL:
        if name != prefix and not name.startswith(prefix + "."):
            continue
        for target, line in imports(name, path):
            top = target.split(".")[0]
            assert top not in FORBIDDEN[prefix], f"{path.relative_to(ROOT)}:{line}: {name} imports {target}"


def test_importing_the_ir_and_the_numba_backend_loads_no_torch():
    code = ("import sys, spikeflow.ir, spikeflow.backends.numba.kernels, spikeflow.backends.numba.egru, "
            "spikeflow.backends.numba.event; print(sorted(m for m in ('torch', 'snntorch', 'norse', 'h5py', 'nir') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300).stdout
    assert out.strip() == "[]", out


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from spikeflow.torch import lowering\n")
    found = list(imports("spikeflow.ir.bad", bad))
    assert ("spikeflow.torch", 2) in found and layer_of("spikeflow.torch") > layer_of("spikeflow.ir.bad")


def test_architecture_doc_lists_the_registry_and_every_layer():
    from spikeflow.backends import backend_names, capabilities

    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = [{"name": n, **capabilities(n).as_row()} for n in backend_names()]
    head = list(rows[0])
    table = "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                      + ["| " + " | ".join(r[k] for k in head) + " |" for r in rows])
    assert f"<!-- registry:start -->\n{table}\n<!-- registry:end -->" in text
    for layer in sorted(set(LAYERS.values())):
        assert f"\n| {layer} | " in text
    assert (ROOT / "docs" / "architecture.png").is_file()
