"""Who imports whom in the product: no import cycle between modules; providers stand alone; the
client (client/gateway_client) imports nothing of the gateway's, nor Django.

Imports are read from the source, including those inside functions (a cycle hidden in a
function is still a cycle); imports under ``if TYPE_CHECKING:`` are left out, as they never run.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "jobs", "providers")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
}


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _runtime_nodes_of(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def _runtime_nodes_of(node: ast.AST) -> Iterator[ast.AST]:
    yield node
    yield from _runtime_nodes(node)


def _project_module(name: str) -> str | None:
    """The project module ``name`` is, or is in (an imported function, class or constant)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The project modules ``module`` imports."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{module}: the product's imports are absolute"
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {target for name in names if (target := _project_module(name))}
    found.discard(module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of nodes that reach one another (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _within(package: str) -> dict[str, set[str]]:
    inside = {m for m in GRAPH if m.split(".")[0] == package}
    return {m: GRAPH[m] & inside for m in inside}


def test_the_reader_sees_imports_inside_functions_and_leaves_out_type_checking_ones():
    assert "providers.models" in imports_of("providers.registry")  # inside a function
    assert "jobs.services" in imports_of("jobs.engine")  # at module level, one name from it
    assert "jobs.selectors" not in imports_of("jobs.serializers")  # under TYPE_CHECKING


def test_cycles_are_found_however_long():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_the_jobs_modules():
    assert cycles(_within("jobs")) == []


def test_no_import_cycle_between_any_two_modules_of_the_product():
    assert cycles(GRAPH) == []


def test_the_bell_is_published_without_importing_the_tasks():
    # services -> dispatch -> tasks -> services was a cycle: the tasks import the services,
    # never the other way round.
    assert "jobs.tasks" not in imports_of("jobs.dispatch")
    assert "jobs.tasks" not in imports_of("jobs.services")


def test_providers_import_neither_jobs_nor_gateway():
    reaching_out = {
        (module, target)
        for module, targets in GRAPH.items()
        if module.split(".")[0] == "providers"
        for target in targets
        if target.split(".")[0] in {"jobs", "gateway"}
    }
    assert reaching_out == set()


# The packages: the project (gateway's configuration and process wiring), its keys-and-auth app,
# the HTTP API's contract, the jobs and the providers. A module belongs to the innermost one.
LAYERS = ("gateway.access", "gateway.http", "gateway", "jobs", "providers")


def package_of(module: str) -> str:
    return next(p for p in LAYERS if module == p or module.startswith(f"{p}."))


PACKAGE_GRAPH = {
    package: {
        package_of(target)
        for module, targets in GRAPH.items()
        if package_of(module) == package
        for target in targets
    }
    - {package}
    for package in LAYERS
}


def test_no_import_cycle_between_the_packages():
    assert cycles(PACKAGE_GRAPH) == []


def test_the_layers_import_only_downwards():
    """providers <- gateway.http <- gateway.access <- jobs <- gateway (the project)."""
    assert PACKAGE_GRAPH["providers"] == set()
    assert PACKAGE_GRAPH["gateway.http"] <= {"providers"}
    assert PACKAGE_GRAPH["gateway.access"] <= {"gateway.http", "providers"}
    assert PACKAGE_GRAPH["jobs"] <= {"gateway.access", "gateway.http", "providers"}


def test_models_never_import_views_or_serializers():
    for module, targets in GRAPH.items():
        if module.rpartition(".")[2] == "models":
            assert not {t for t in targets if t.rpartition(".")[2] in {"views", "serializers"}}


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


TOOLS = {"harness", "bench", "drill", "fuzz"}


def test_the_product_never_imports_its_tools():
    reaching = {
        (module, name)
        for module, path in MODULES.items()
        for name in _imported_names(path)
        if name.split(".")[0] in TOOLS
    }
    assert reaching == set()


def test_only_the_benchmarks_tests_import_the_benchmark():
    reaching = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("*.py")
        if "bench" not in path.relative_to(ROOT / "tests").parts[:1]
        and any(name.split(".")[0] == "bench" for name in _imported_names(path))
    }
    assert reaching == set()


CLIENT = ROOT / "client" / "gateway_client"
NOT_FOR_THE_CLIENT = {*PACKAGES, *TOOLS, "django", "rest_framework", "celery", "kombu"}


def test_the_client_imports_nothing_of_the_gateway_nor_django():
    reaching = {
        (str(path.relative_to(ROOT)), name)
        for path in CLIENT.rglob("*.py")
        for name in _imported_names(path)
        if name.split(".")[0] in NOT_FOR_THE_CLIENT
    }
    assert reaching == set()
    assert "httpx" in _imported_names(CLIENT / "client.py")  # the reader sees the client's imports


def test_the_installed_client_loads_without_the_gateway_or_django(tmp_path: Path):
    # Away from the checkout, so only what is installed can be imported.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, gateway_client, gateway_client.cli; "
            "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    top_level = set(json.loads(loaded.stdout))
    assert "gateway_client" in top_level
    assert top_level & NOT_FOR_THE_CLIENT == set()


def test_the_gateway_never_imports_the_client():
    reaching = {
        (module, name)
        for module, path in MODULES.items()
        for name in _imported_names(path)
        if name.split(".")[0] == "gateway_client"
    }
    assert reaching == set()
