"""The library has no import cycle: every module imports alone, and the import graph is a DAG.

The graph's nodes are the modules of `keras_googlenet`; an edge `a -> b` is an `import b` or
`from b import name` anywhere in `a` (module level or inside a function: a lazy import is
still a dependency). `from pkg import name` is an edge to `pkg.name` when that is a module,
else to `pkg` (its `__init__`). The rule for packages: importing `a.b.c` also runs
`a/__init__` and `a/b/__init__`, but those implicit parent edges are not counted, so a
package `__init__` that re-exports its submodules is not in a cycle with them. An explicit
import of a package (its `__init__`) is an edge like any other and counts.
"""

import ast
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "keras_googlenet"


def _module_files():
    """{dotted module name: path} for every library module."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_package(name, modules):
    return modules[name].name == "__init__.py"


def _import_edges(name, path, modules):
    edges = set()
    package = name if _is_package(name, modules) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # `import a.b.c` names a.b.c; keep the longest prefix that is a library module.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
    return edges


def import_graph():
    modules = _module_files()
    return {name: _import_edges(name, path, modules) for name, path in modules.items()}


def find_cycle(graph):
    """One cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    # googlenet imports the ImageNet-weights loader inside GoogLeNet(), not at the top.
    assert "keras_googlenet.weights.imagenet" in graph["keras_googlenet.googlenet"]
    assert "keras_googlenet.googlenet" in graph["keras_googlenet.weights.convert"]


def test_the_library_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_builder_porting_and_caching_import_without_each_other():
    graph = import_graph()
    assert not graph["keras_googlenet.googlenet"] & {
        "keras_googlenet.weights", "keras_googlenet.weights.convert"}
    for module in ("mapping", "state_dict", "imagenet"):
        assert "keras_googlenet.googlenet" not in graph[f"keras_googlenet.weights.{module}"]


def test_every_module_imports_alone_in_a_fresh_interpreter():
    modules = sorted(_module_files())
    script = (
        "import importlib, json, sys, traceback\n"
        "failures = {}\n"
        f"for name in {modules!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'keras_googlenet']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failures[name] = traceback.format_exc(limit=-3)\n"
        "print(json.dumps(failures))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=600,
                            env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n".join(f"{k}:\n{v}" for k, v in failures.items())
