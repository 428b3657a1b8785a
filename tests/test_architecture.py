"""The shape of the source tree: no import circles, no module importing another's private names,
and no module longer than 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import anywhere in the module."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[: len(package) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = [a.name for a in node.names]
            if base in modules:
                found.append((base, names))
            found += [(f"{base}.{n}", []) for n in names if f"{base}.{n}" in modules]
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name in modules]
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def test_no_import_circles_even_inside_functions():
    """Every import counts, and importing ``a.b.c`` also runs the ``__init__`` of ``a.b``
    (unless the importer is inside ``a.b``: then it is already running)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for m, p in modules.items():
        inside = set(_ancestors(m)) | ({m} if p.name == "__init__.py" else set())
        deps = set()
        for dep, _ in _imports(m, p, modules):
            deps |= {d for d in [*_ancestors(dep), dep] if d in modules and d not in inside}
        graph[m] = deps - {m}
    assert _cycles(graph) == []


def test_no_module_takes_another_modules_private_names():
    modules = _modules()
    private = [
        f"{m} takes {dep}.{n}"
        for m, p in modules.items()
        for dep, names in _imports(m, p, modules)
        for n in names
        if n.startswith("_") and not n.startswith("__") and dep != m
    ]
    assert private == []


def test_modules_stay_small():
    too_long = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            too_long[rel] = lines
    assert too_long == {}, f"split these modules (limit {MAX_LINES} lines): {too_long}"


def test_every_module_imports():
    """A name moved to another module leaves no import of it behind (ruff cannot see those)."""
    import importlib
    import pkgutil

    import napari_hitl

    failed = {}
    for info in pkgutil.walk_packages(napari_hitl.__path__, "napari_hitl."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed[info.name] = f"{type(exc).__name__}: {exc}"
    assert failed == {}


def _private_members(paths: list[Path]) -> set[str]:
    """Private attribute and method names (``_x``, not dunders) the classes in ``paths`` define."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in {"self", "cls"}
                and isinstance(node.ctx, ast.Store)
            ):
                names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_the_store_format_has_one_owner():
    """Only the store package touches the store's private parts (its zarr root, groups, locks):
    everyone else goes through ProjectStore's public methods."""
    store_pkg = SRC / "napari_hitl" / "core" / "store"
    private = _private_members(sorted(store_pkg.glob("*.py")))
    assert {"_root", "_image_group", "_attrs"} <= private  # the check sees them
    found = []
    for path in SRC.rglob("*.py"):
        if store_pkg in path.parents:
            continue
        own = _private_members([path])  # a module may have private names of its own
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in private - own
                and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} .{node.attr}")
    assert found == []
