"""The layout holds: data flows one way between the subpackages, no module is too big to read, no module reaches
into another's private names (README "How it is built")."""

from __future__ import annotations

import ast

from helpers import PROJECT

PACKAGE = PROJECT / "milabox"
SHARED = {"errors", "resources", "origin", "stats"}  # small modules every room may use
# What each room may import besides SHARED: definitions -> images -> execution -> rundir -> reporting,
# with shipping and cluster beside execution, cli on top.
ALLOWED = {
    "definitions": set(),
    "engine": set(),
    "images": {"definitions", "engine"},
    "rundir": {"engine"},
    "execution": {"definitions", "engine", "images", "rundir"},
    "reporting": {"rundir"},
    "shipping": {"definitions", "engine", "images", "rundir"},
    "cluster": {"definitions", "engine", "images", "execution", "rundir", "shipping"},
    "cli": {"definitions", "engine", "images", "execution", "rundir", "reporting", "shipping", "cluster"},
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "suite" in path.relative_to(PACKAGE).parts:  # the bundled benchmarks: workload code, not milabox
            continue
        yield path, ast.parse(path.read_text())


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("milabox.") and not node.level:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("milabox."):
                    yield alias.name, []


def test_data_flows_one_way_between_subpackages():
    wrong = []
    for path, tree in _modules():
        parts = path.relative_to(PACKAGE).parts
        room = parts[0] if len(parts) > 1 else None
        if room is None:
            continue
        for module, _ in _imports(tree):
            target = module.split(".")[1]
            if target != room and target not in SHARED and target not in ALLOWED[room]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_400_lines():
    # The bundled benchmarks' code too: everything under milabox/ is read by someone.
    long = [f"{p.relative_to(PACKAGE)}: {n}" for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 400]
    assert not long, long


def test_no_module_imports_another_modules_private_names():
    private = [f"{p.relative_to(PACKAGE)}: {m}.{n}" for p, tree in _modules() for m, names in _imports(tree)
               for n in names if n.startswith("_") and not n.startswith("__")]
    assert not private, private


def test_every_room_says_what_it_is_for():
    rooms = [p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    assert {p.name for p in rooms} == set(ALLOWED)
    for room in rooms:
        assert ast.get_docstring(ast.parse((room / "__init__.py").read_text())), f"{room.name}/__init__.py"


def test_test_modules_have_unique_names():
    # pytest imports test files by basename (no __init__.py): two of one name stop the whole collection.
    names = [p.name for p in (PACKAGE.parent / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
