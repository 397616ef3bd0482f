from __future__ import annotations

import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, panet; "
        "heavy = [m for m in ('panet.apps.cli', 'panet.zoo.weights', 'panet.nn.attention', 'panet.nn.model', 'torch') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_public_names_are_the_documented_objects_of_their_modules():
    import importlib

    import pytest

    import panet

    assert panet.__all__ == sorted(panet._EXPORTS)
    for name, module in panet._EXPORTS.items():
        value = getattr(panet, name)
        assert value is getattr(importlib.import_module(f"panet.{module}"), name), name  # not a stale copy
        assert value.__module__ == f"panet.{module}", f"{name} is defined in {value.__module__}, not panet.{module}"
        assert (value.__doc__ or "").strip(), f"panet.{name} has no docstring"
        assert name in dir(panet)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        panet.nope  # noqa: B018


def test_ci_fails_loudly_without_the_shared_material(tmp_path):
    """With CI=true and no ../shared, the release-fixture tests must error, not skip or vanish."""
    import os
    from pathlib import Path

    tests = Path(__file__).resolve().parent

    def fixture_tests(ci: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "CI": ci, "PANET_SHARED": str(tmp_path / "missing")}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests / "test_fixtures.py")]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tests.parent)

    run = fixture_tests("true")
    assert run.returncode != 0 and "CI=true needs ../shared" in run.stdout + run.stderr, run.stdout[-2000:]
    run = fixture_tests("false")
    assert run.returncode == 0 and "skipped" in run.stdout, run.stdout[-2000:]


def test_no_task_is_named_outside_the_task_table():
    """Per-task behaviour lives in panet.tasks.TASKS: elsewhere in the package no comparison with a task name, no
    table keyed by task names and no hand-written list of them (presets may still say which task they serve)."""
    import ast
    from pathlib import Path

    import panet
    from panet.tasks import TASKS

    names = set(TASKS)

    def constants(node):
        return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]

    offenders = []
    for path in sorted(Path(panet.__file__).parent.rglob("*.py")):
        if path.name == "tasks.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            found = None
            if isinstance(node, ast.Compare) and names & set(constants(node)):
                found = "comparison"
            elif isinstance(node, ast.Dict) and names & {k.value for k in node.keys if isinstance(k, ast.Constant)}:
                found = "table keyed by task"
            elif isinstance(node, (ast.List, ast.Tuple, ast.Set)) and len(names & set(constants(node))) > 1:
                found = "list of tasks"
            if found:
                offenders.append(f"{path.name}:{node.lineno} {found}")
    assert not offenders, offenders


def test_the_package_imports_form_no_circle():
    """Every module's imports of other panet modules, lazy ones inside functions included, form a DAG: the layers
    (nn, data, zoo, inference, evaluation, train, apps over tasks/files/errors/hardware) never import in a circle."""
    import ast
    from pathlib import Path

    import panet

    root = Path(panet.__file__).parent
    modules = {
        ".".join(("panet", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): p
        for p in root.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{name}: relative import"
                if node.module and node.module.startswith("panet"):
                    targets = [f"{node.module}.{a.name}" for a in node.names]
                    deps |= {t for t in targets if t in modules} or {node.module}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("panet")}
        graph[name] = deps - {name, "panet"}  # the package root only re-exports (lazily) and gives __version__
    assert set().union(*graph.values()) <= set(modules), "an import of a module that does not exist"
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        assert state.get(node) != 1, "import circle: " + " -> ".join([*path, node])
        state[node] = 1
        for dep in sorted(graph[node]):
            visit(dep, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        visit(name, [])
