"""Imports: the library has no import cycle, `training/` uses only the names the library lists
in `__all__`, and importing a training module changes nothing but `sys.modules`.

The library has no import cycle: every module imports alone, and the import graph is a DAG.

The graph's nodes are the modules of `keras_googlenet`; an edge `a -> b` is an `import b` or
`from b import name` anywhere in `a` (module level or inside a function: a lazy import is
still a dependency). `from pkg import name` is an edge to `pkg.name` when that is a module,
else to `pkg` (its `__init__`). The rule for packages: importing `a.b.c` also runs
`a/__init__` and `a/b/__init__`, but those implicit parent edges are not counted, so a
package `__init__` that re-exports its submodules is not in a cycle with them. An explicit
import of a package (its `__init__`) is an edge like any other and counts.
"""

import ast
import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "keras_googlenet"
TRAINING = ROOT / "training"
TRAINING_PACKAGE = "keras_googlenet_training"


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


@pytest.mark.slow
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
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n".join(f"{k}:\n{v}" for k, v in failures.items())


# ---------------------------------------------------------------------------------
# training/ uses the library's public names only


def library_references(source, modules):
    """`(line, module, name)` for every library name `source` uses that is not a module:
    `from keras_googlenet.m import name`, and `alias.name` (or `alias.sub.name`) where
    `alias` is bound to a library module (`import keras_googlenet as kg`, `from
    keras_googlenet import export`)."""
    tree = ast.parse(source)
    aliases, found = {}, set()

    def resolve(line, module, attributes):
        for attribute in attributes:
            if f"{module}.{attribute}" not in modules:
                found.add((line, module, attribute))
                return
            module = f"{module}.{attribute}"

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "keras_googlenet":
                    aliases[alias.asname or "keras_googlenet"] = (
                        alias.name if alias.asname else "keras_googlenet")
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module \
                and node.module.split(".")[0] == "keras_googlenet":
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                else:
                    found.add((node.lineno, node.module, alias.name))
    for node in ast.walk(tree):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if chain and isinstance(node, ast.Name) and node.id in aliases:
            resolve(node.lineno, aliases[node.id], chain[::-1])
    return sorted(found)


def test_the_reference_finder_sees_every_form():
    modules = {"keras_googlenet", "keras_googlenet.export", "keras_googlenet.export.publish"}
    source = (
        "import keras_googlenet as kg\n"
        "import keras_googlenet.export.publish\n"
        "from keras_googlenet import export\n"
        "from keras_googlenet.export import publish as pub, export_model\n"
        "kg.GoogLeNet(kg.export.FORMATS)\n"
        "keras_googlenet.export.publish.atomic_path(export.core, pub.staging_path)\n"
    )
    assert library_references(source, modules) == [
        (4, "keras_googlenet.export", "export_model"),
        (5, "keras_googlenet", "GoogLeNet"),
        (5, "keras_googlenet.export", "FORMATS"),
        (6, "keras_googlenet.export", "core"),
        (6, "keras_googlenet.export.publish", "atomic_path"),
        (6, "keras_googlenet.export.publish", "staging_path"),
    ]


def test_training_uses_only_names_the_library_lists_in_all():
    """`training/` is the library's first user: whatever it needs is public, listed in the
    `__all__` of the module that defines it (`_compat` too: its names are public to us).
    Dunder names (`__version__`) are public by convention."""
    modules = set(_module_files())
    private = []
    for path in sorted(TRAINING.rglob("*.py")):
        for line, module, name in library_references(path.read_text(encoding="utf-8"), modules):
            dunder = name.startswith("__") and name.endswith("__")
            if not dunder and name not in getattr(importlib.import_module(module), "__all__", ()):
                private.append(f"{path.relative_to(ROOT)}:{line}: {module}.{name}")
    assert not private, "not in the module's __all__:\n" + "\n".join(private)


# ---------------------------------------------------------------------------------
# importing a training module has no side effects


def _training_modules():
    names = []
    for path in sorted(TRAINING.rglob("*.py")):
        parts = [TRAINING_PACKAGE, *path.relative_to(TRAINING).with_suffix("").parts]
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


# In a fresh interpreter: the CLI modules first (a CLI quiets TensorFlow's start in `main`,
# so importing one must not import TensorFlow), then every other module, each checked
# against the state before it: file descriptor 2, the root logger, the quiet-start marker a
# CLI's `main` sets, and Keras' global configuration once Keras is imported.
_SIDE_EFFECTS_SCRIPT = """
import importlib, json, logging, os, sys
cli_modules, other_modules = json.loads(sys.argv[1])

def state():
    fd2, root = os.fstat(2), logging.getLogger()
    return {"fd 2": [fd2.st_dev, fd2.st_ino], "root logger": [len(root.handlers), root.level],
            "quiet-start marker": os.environ.get("KERAS_GOOGLENET_QUIET_START")}

def keras_state():
    import keras
    return {"keras": [keras.config.dtype_policy().name, keras.config.floatx(),
                      keras.config.image_data_format(), keras.config.backend()]}

changes = {}
before = state()
for name in cli_modules:
    importlib.import_module(name)
    changes[name] = [k for k, v in state().items() if v != before[k]]
    if "tensorflow" in sys.modules:
        changes[name].append("imports tensorflow")
before = {**state(), **keras_state()}
for name in other_modules:
    importlib.import_module(name)
    changes[name] = [k for k, v in {**state(), **keras_state()}.items() if v != before[k]]
print(json.dumps({name: found for name, found in changes.items() if found}))
"""


@pytest.mark.slow
def test_importing_a_training_module_changes_no_global_state():
    modules = _training_modules()
    cli = [m for m in modules if m.split(".")[1:2] == ["cli"]]
    assert f"{TRAINING_PACKAGE}.cli" in cli and f"{TRAINING_PACKAGE}.cli.train" in cli
    others = [m for m in modules if m not in cli]
    environ = {k: v for k, v in os.environ.items() if k != "KERAS_GOOGLENET_QUIET_START"}
    result = subprocess.run(
        [sys.executable, "-c", _SIDE_EFFECTS_SCRIPT, json.dumps([cli, others])], cwd=ROOT,
        capture_output=True, text=True, timeout=600,
        env={**environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    changes = json.loads(result.stdout.strip().splitlines()[-1])
    assert changes == {}, changes
