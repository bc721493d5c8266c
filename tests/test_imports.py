"""The package's import graph: no cycles, and no module imports another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ogkit"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module, top_level_only: bool):
    """(module imported, names) for every ``from ogkit… import`` / ``import ogkit…``."""
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` blocks
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ogkit"):
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("ogkit"):
                    yield a.name, []


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, names in _imports(ast.parse(path.read_text()), top_level_only=True):
            for n in names or [None]:
                sub = f"{target}.{n}" if n else target
                dep = sub if sub in modules else target
                if dep in modules and dep != name:
                    graph[name].add(dep)
    return graph


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # A package's __init__ re-exporting its own submodules is not a cycle between rooms.
    real = [c for c in cycles if not all(x == c[0] or x.startswith(c[0] + ".") for x in c)]
    assert sum(len(d) for d in graph.values()) > 50  # the graph was really read
    assert not real, f"import cycles: {real[:5]}"


def test_no_module_imports_a_private_name_from_another():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for target, names in _imports(ast.parse(path.read_text()), top_level_only=False):
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    offenders.append(f"{_module_name(path)} imports {target}.{n}")
    assert not offenders, offenders


def test_reading_records_leaves_arrows_dataset_layer_unloaded(tmp_path):
    """Every verify worker and CLI run reads records: through ``ParquetFile``, never
    ``pq.read_table``, whose first call imports Arrow's dataset layer and pandas (about
    0.4 s a fresh process). Checked in a fresh interpreter, on real records."""
    import subprocess
    import sys

    script = """
import sys
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ogkit.batch import parquet_table, read_records, records_input_leaves
table = pa.table({
    "input_hash": pa.array([bytes(32)] * 4, pa.binary(32)),
    "output_hash": pa.array([bytes(32)] * 4, pa.binary(32)),
    "output.y": pa.array(np.ones(4, np.float32)),
})
sink = pa.BufferOutputStream()
pq.write_table(table, sink)
data = sink.getvalue().to_pybytes()
assert "pyarrow.dataset" not in sys.modules
records = read_records(data, {"inputs": {}, "outputs": {"y": ("float32", ())}}, offset=8)
assert records.row_index.tolist() == [8, 9, 10, 11] and records.leaves.shape == (4, 32)
assert records.outputs["y"].tolist() == [1.0] * 4
assert records_input_leaves(data, 0, 4).shape == (4, 32)
assert parquet_table(data, ["input_hash", "absent"]).column_names == ["input_hash"]
assert "pyarrow.dataset" not in sys.modules, "a records read imported pyarrow.dataset"
print("clean")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("clean")
