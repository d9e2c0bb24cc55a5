"""The package's modules import one another in one direction: no cycles, counting imports made
inside functions, so that each file reads top to bottom and the read side stays light."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "forecast"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules that ``path`` imports anywhere in it (top level or in functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from forecast import plots` imports forecast.plots; `from forecast.x import y`
            # imports forecast.x (or the submodule forecast.x.y).
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    graph = {module_name(path): imports_of(path, modules) - {module_name(path)} for path in paths}
    # A package imports its submodules to re-export them; that is not a cycle with them.
    return {
        module: {m for m in targets if not module.startswith(m + ".") and m != "forecast"}
        for module, targets in graph.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_no_import_cycles_among_the_package_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_sees_imports_inside_functions(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from forecast.config import load_experiment\n")
    assert imports_of(source, {"forecast.config"}) == {"forecast.config"}


def test_config_is_the_ground_floor():
    """config imports nothing of ours but the paths, so every other module can use it."""
    assert import_graph()["forecast.config"] <= {"forecast.paths"}
    assert import_graph()["forecast.paths"] == set()


@pytest.mark.parametrize(
    "module", ["forecast.cli", "forecast.results", "forecast.evaluation", "forecast.ui"]
)
@pytest.mark.processes
def test_the_read_side_imports_no_tensorflow(module):
    script = f"import sys, {module}; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", script], timeout=120).returncode == 0


def test_a_trial_computes_and_records_nothing():
    """trial.py returns an outcome; MLflow is called only at the edge (runner, tracking)."""
    modules = {"mlflow"}
    names = ("trial", "plan", "training", "evaluation", "models", "plots")
    paths = [PACKAGE / f"{name}.py" for name in names] + sorted((PACKAGE / "data").glob("*.py"))
    for path in paths:
        assert imports_of(path, modules) == set(), path.name
