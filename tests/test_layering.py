"""The project's import layers, read from the source with `ast` (imports inside functions included).

Bottom to top; a module imports only from its own layer or below:
    0 ops/                 tensor ops: plain references and their fast paths
    1 modules/             nn.Modules and the pure math they call (quantizers, codes, generation)
    2 data/                file formats and loaders: raw datasets, splits, embeddings, run files
                           (data/files.py), the semantic-ID artifact (data/artifact.py); data/schema.py holds
                           TigerError, the base of every input error
    3 evaluate/ library    metrics, popularity, retrieval (beam search over a split)
    4 training/            gin CLI, bindings, checkpoints, accelerator, loop bookkeeping, provenance, the
                           stage-2 retriever built from an artifact (training/retriever.py)
    5 entry points         train_rqvae.py, train_decoder.py, the `python -m evaluate.{run,exact,recommend,
                           sasrec}` and `python -m training.show_data` CLIs, bench/
No module imports a training script (tests may), and the import graph has no cycle.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ops", "modules", "data", "evaluate", "training", "bench")
SCRIPTS = ("train_rqvae", "train_decoder")
ENTRY = {
    *SCRIPTS,
    "evaluate.run",
    "evaluate.exact",
    "evaluate.recommend",
    "evaluate.sasrec",
    "training.show_data",
}
LAYERS = {"ops": 0, "modules": 1, "data": 2, "evaluate": 3, "training": 4, "bench": 5}


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every project .py file outside tests/ (a package's __init__: the package)."""
    files = [ROOT / f"{name}.py" for name in SCRIPTS]
    files += [f for package in PACKAGES for f in sorted((ROOT / package).rglob("*.py"))]
    names = {}
    for file in files:
        parts = file.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return names


def imports_of(file: Path, modules: set[str]) -> set[str]:
    """The project modules `file` imports anywhere in its body (`from p import m` counts m when a module)."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules}


def layer(module: str) -> int:
    return 5 if module in ENTRY else LAYERS.get(module.split(".")[0], 5)


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(file, set(modules)) - {name} for name, file in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_scan_sees_the_known_imports():
    graph = import_graph()
    assert "training.cli" in graph["train_decoder"] and "modules.transformer" in graph["modules.model"]
    assert layer("evaluate.metrics") == 3 and layer("evaluate.run") == 5 and layer("ops.jagged") == 0


def test_no_module_imports_a_training_script():
    bad = {m: sorted(i & set(SCRIPTS)) for m, i in import_graph().items() if i & set(SCRIPTS)}
    assert not bad, f"modules importing a training script: {bad}"


def test_no_import_cycle():
    assert not cycles(import_graph())


def test_no_import_cycle_between_packages():
    """A package (or an entry point) as one node: data -> training -> data is a cycle even when no module
    closes it, since the two packages can no longer be read, tested or moved one without the other."""
    unit = {m: m if m in ENTRY else m.split(".")[0] for m in project_modules()}
    graph: dict[str, set[str]] = {u: set() for u in unit.values()}
    for m, imported in import_graph().items():
        graph[unit[m]].update(unit[i] for i in imported if unit[i] != unit[m])
    assert not cycles(graph)


def test_no_import_goes_up_a_layer():
    upward = sorted(
        f"{m} (layer {layer(m)}) imports {i} (layer {layer(i)})"
        for m, imported in import_graph().items()
        for i in imported
        if layer(i) > layer(m)
    )
    assert not upward, "\n".join(upward)
