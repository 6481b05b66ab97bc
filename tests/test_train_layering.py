"""The import graph of the package, read from the source (nothing is imported): no circle, no function-level import
inside `avel_fast.train`, and the layers of docs/training.md#layers (reference below augment, kernels below nn, the
training loop below the families)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"avel_fast": ROOT / "avel_fast", "avel_fast.kernels": ROOT / "kernels", "avel_fast.cli": ROOT / "cli"}


def module_files() -> dict[str, Path]:
    """Every module of the installed package by its name (`kernels/` and `cli/` are installed inside it)."""
    modules = {}
    for package, directory in SOURCES.items():
        for path in directory.rglob("*.py"):
            parts = path.relative_to(directory).with_suffix("").parts
            name = ".".join((package, *parts[:-1], *(() if parts[-1] == "__init__" else parts[-1:])))
            modules[name] = path
    return modules


MODULES = module_files()


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, (ast.Name, ast.Attribute)) and ast.unparse(node.test).endswith("TYPE_CHECKING")


def imports(name: str) -> list[tuple[str, bool]]:
    """(imported package module, whether the import sits in a function) of module `name`; imports under
    ``if TYPE_CHECKING`` execute nothing and are left out."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child, in_function)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append((target if target in MODULES else base, in_function))
        function = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(path.read_text()), False)
    return [(target, inner) for target, inner in found if target in MODULES]


GRAPH = {name: imports(name) for name in MODULES}


def reachable(start: str, *, module_level_only: bool = False) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target, inner in GRAPH[todo.pop()]:
            if target not in seen and not (module_level_only and inner):
                seen.add(target)
                todo.append(target)
    return seen


def test_the_graph_is_read():
    assert len(MODULES) > 80 and "avel_fast.train.loop" in MODULES and "avel_fast.kernels.rgct" in MODULES
    assert ("avel_fast.train.config", False) in GRAPH["avel_fast.train.loop"]


def test_no_module_imports_itself_back():
    circles = sorted(name for name in MODULES if name in reachable(name))
    assert circles == [], f"modules on an import circle: {circles}"


def test_the_training_package_has_no_function_level_import_of_the_package():
    inner = sorted(
        f"{name} -> {target}" for name in MODULES if name.startswith("avel_fast.train")
        for target, in_function in GRAPH[name] if in_function
    )  # fmt: skip
    assert inner == []


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("avel_fast.reference", "avel_fast.augment"),
        ("avel_fast.kernels", "avel_fast.nn"),
        ("avel_fast.train.loop", "avel_fast.train.families"),
        ("avel_fast.train.loop", "avel_fast.train.runner"),
        ("avel_fast.train.data", "avel_fast.train.families"),
    ],
)
def test_a_layer_imports_nothing_above_it(lower, upper):
    offenders = sorted(
        f"{name} -> {target}" for name in MODULES if name == lower or name.startswith(f"{lower}.")
        for target in reachable(name) if target == upper or target.startswith(f"{upper}.")
    )  # fmt: skip
    assert offenders == []


def test_the_loop_is_given_its_family_and_never_looks_one_up():
    """The shared config resolves a model name through the registry; the loop itself does not."""
    assert "avel_fast.train.registry" not in {target for target, _ in GRAPH["avel_fast.train.loop"]}
