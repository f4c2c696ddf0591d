"""The package's layout holds: no import cycles, the runtime never imports the checker, small modules."""

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "promptlang"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
CHECKER = ("promptlang.language.checks", "promptlang.language.check_context", "promptlang.language.file_checks",
           "promptlang.language.task_checks", "promptlang.compiler.tokenizer_checks")
RUNTIME_PACKAGES = ("promptlang.runtime", "promptlang.stages", "promptlang.output")

# Today's exceptions, each with why it is still there; the goal is an empty table.
LONG_MODULES: dict[str, str] = {}
LONG_FUNCTIONS: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute name a (possibly relative) `from X import ...` refers to."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The promptlang modules one import statement loads (a name from a package is the package)."""
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        source = _absolute(module, node)
        names = {f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source for alias in node.names}
    return {name for name in names if name in MODULES and name != module}


def _imports(module: str, tree: ast.Module, *, in_functions: bool) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)) and (in_functions or not nested):
                found.update(_targets(module, child))
            visit(child, inner)

    visit(tree, False)
    return found


@functools.cache
def _graph(*, in_functions: bool) -> dict[str, set[str]]:
    return {name: _imports(name, ast.parse(path.read_text(encoding="utf-8")), in_functions=in_functions)
            for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), as a chain."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = {stack.pop()}
            while node not in component:
                component.add(stack.pop())
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_chain(graph, component) for component in components]


def _chain(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """The shortest path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for target in sorted(graph[node] & component):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                frontier.append(target)
    raise AssertionError(f"not a cycle: {component}")


def _readable(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(chain) for chain in cycles)


def test_the_graph_sees_the_package():
    graph = _graph(in_functions=False)
    assert "promptlang.language.spec" in graph["promptlang.language.builder"]
    assert {"promptlang.language.spec", "promptlang.language.diagnostics"} <= set(MODULES)
    assert "promptlang.runner" not in graph["promptlang.cli"]  # imported inside the command that runs
    assert "promptlang.runner" in _graph(in_functions=True)["promptlang.cli"]


def test_the_cycle_finder_reports_a_chain():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _readable(_cycles(graph)) == "a -> b -> c -> a"


def test_no_import_cycle_at_module_level():
    cycles = _cycles(_graph(in_functions=False))
    assert not cycles, "import cycles among promptlang modules:\n" + _readable(cycles)


def test_no_import_cycle_through_imports_inside_functions():
    cycles = _cycles(_graph(in_functions=True))
    assert not cycles, "import cycles once imports inside functions count:\n" + _readable(cycles)


def test_the_runtime_never_imports_the_checker():
    graph = _graph(in_functions=True)
    found = {name: sorted(graph[name] & {*CHECKER, "promptlang"}) for name in MODULES if name.startswith(RUNTIME_PACKAGES)}
    assert not {name: checker for name, checker in found.items() if checker}, "the runtime imports the checker " \
        "(`promptlang` itself loads it: import from the module that defines the name)"


def _module_lengths() -> dict[str, int]:
    return {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()}


def _function_lengths() -> dict[str, int]:
    lengths = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths[f"{name}.{node.name}"] = max(lengths.get(f"{name}.{node.name}", 0),
                                                    node.end_lineno - node.lineno + 1)
    return lengths


@pytest.mark.parametrize("lengths, limit, allowed", [
    (_module_lengths, MAX_MODULE_LINES, LONG_MODULES),
    (_function_lengths, MAX_FUNCTION_LINES, LONG_FUNCTIONS),
], ids=["modules", "functions"])
def test_nothing_is_too_long(lengths, limit, allowed):
    measured = lengths()
    over = {name: size for name, size in measured.items() if size > limit and name not in allowed}
    assert not over, f"over {limit} lines (split them): {over}"
    stale = [name for name in allowed if measured.get(name, 0) <= limit]
    assert not stale, f"no longer over {limit} lines, drop them from the allow-list: {stale}"


def _kind_tests(tree: ast.Module, kinds: set[str]) -> list[int]:
    """Lines that compare something with a method kind written as a string (`kind == "pet"`, `in ("pet", ...)`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            values = [c for c in node.comparators + [node.left]]
            values += [e for c in values if isinstance(c, (ast.Tuple, ast.List, ast.Set)) for e in c.elts]
            if any(isinstance(v, ast.Constant) and v.value in kinds for v in values):
                found.append(node.lineno)
    return found


def test_no_method_kind_is_tested_as_a_string_outside_its_own_module():
    from promptlang.language.spec import METHOD_KINDS

    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in PACKAGE.rglob("*.py")}
    found = {str(path.relative_to(ROOT)): lines for path, tree in trees.items()
             if path.parent.name != "methods" and (lines := _kind_tests(tree, set(METHOD_KINDS)))}
    assert found == {}
    assert _kind_tests(ast.parse('if method.kind in ("zero_shot", "x"):\n    pass'), set(METHOD_KINDS)) == [1]
