"""The house rules of docs/architecture.md, checked: every import of lamflow code runs down the layers
(a module may import its own package and anything below it, never above), at module level and inside
functions alike, and ops/ never imports the client side. Read from the source with ``ast``: nothing is
imported, so an import that would only run in a rare branch is seen too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# lowest first; a package may import those before it (and itself)
LAYERS: list[tuple[str, ...]] = [
    ("ops",),
    ("errors", "settings", "dflow_config", "presets", "timestamps", "check_cache"),
    ("spec",),
    ("resolve",),
    ("compile",),
    ("stages",),
    ("planner",),
    ("store",),
    ("argo",),
    ("engines",),
    ("report",),
    ("api",),
    ("cli",),
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def package_of(module: str) -> str | None:
    """The layer package of a ``lamflow.*`` module name (None for the namespace itself)."""
    parts = module.split(".")
    if parts[:2] == ["lamflow", "ops"]:
        return "ops"
    if parts[:2] == ["lamflow", "workflows"] and len(parts) > 2:
        return parts[2]
    return None


def source_files() -> list[tuple[str, Path]]:
    found = []
    for root, prefix in ((REPO / "workflows", "lamflow.workflows"), (REPO / "ops", "lamflow.ops")):
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            module = ".".join((prefix, *parts)).removesuffix(".__init__")
            found.append((module, path))
    return found


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported lamflow module) of every import in the file, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return [(line, name) for line, name in out if name.startswith("lamflow.")]


def test_every_package_has_a_layer():
    packages = {package_of(m) for m, _ in source_files()} - {None}
    assert packages <= set(RANK), f"give these a layer in {__file__}: {sorted(packages - set(RANK))}"


@pytest.mark.parametrize(("module", "path"), source_files(), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_run_down_the_layers(module, path):
    here = package_of(module)
    if here is None:
        return
    wrong = []
    for line, name in imports(path, module):
        there = package_of(name)
        if there is None or there == here:
            continue
        if RANK[there] > RANK[here]:
            wrong.append(f"{path.relative_to(REPO)}:{line} imports {name} ({there} is above {here})")
    assert not wrong, "\n".join(wrong)


# inside ops/ (ops/__init__.py): the DeePMD-kit seam, then the step runtime, then data, then what the
# training, evaluation and dynamics code shares, then the concurrent-learning loop's decisions (which use
# evaluation) and its labelers; the step ops (modules at the top) use any of these
OPS_LAYERS: list[tuple[str, ...]] = [
    ("dp",),
    ("runtime",),
    ("data",),
    ("training", "evaluation", "dynamics"),
    ("active", "labeling"),
]
OPS_RANK = {package: rank for rank, packages in enumerate(OPS_LAYERS) for package in packages}
STEP_OPS = len(OPS_LAYERS)  # the rank of a step op module (lamflow.ops.<op>)


def ops_rank(module: str) -> int:
    """The rank inside ops/ of a ``lamflow.ops.*`` module: its sub-package's, or a step op's."""
    part = module.split(".")[2] if module.count(".") >= 2 else ""
    return OPS_RANK.get(part, STEP_OPS)


@pytest.mark.parametrize(
    ("module", "path"),
    [(m, p) for m, p in source_files() if package_of(m) == "ops"],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_ops_sub_packages_never_import_a_step_op_or_a_later_sub_package(module, path):
    here = ops_rank(module)
    if here == STEP_OPS:
        return
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for line, name in imports(path, module)
        if package_of(name) == "ops" and name != "lamflow.ops" and ops_rank(name) > here
    ]
    assert not wrong, "\n".join(wrong)


def test_every_ops_sub_package_has_a_rank():
    packages = {p.name for p in (REPO / "ops").iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(OPS_RANK) - {"dp"}, (
        f"rank these in {__file__}: {sorted(packages ^ (set(OPS_RANK) - {'dp'}))}"
    )


def test_the_layer_test_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from lamflow.workflows.engines.local import LocalEngine\n")
    assert imports(bad, "lamflow.workflows.spec.bad") == [(2, "lamflow.workflows.engines.local")]
    assert RANK[package_of("lamflow.workflows.engines.local")] > RANK["spec"]
    assert (
        ops_rank("lamflow.ops.freeze") > ops_rank("lamflow.ops.training.common") > ops_rank("lamflow.ops.dp")
    )


def _module_level_imports(path: Path, module: str) -> set[str]:
    """The lamflow modules a file imports when it is imported (not inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    top += [n for block in tree.body if isinstance(block, ast.If | ast.Try) for n in block.body
            if isinstance(n, ast.Import | ast.ImportFrom) and not _type_checking(block)]  # fmt: skip
    names = set()
    for node in top:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # `from package import module`
    return {n for n in names if n.startswith("lamflow.")}


def _type_checking(block: ast.stmt) -> bool:
    return isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)


def test_no_import_circles():
    """No two modules import each other, directly or around a loop, when they are imported."""
    files = dict(source_files())
    graph = {m: {n for n in _module_level_imports(p, m) if n in files and n != m} for m, p in files.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not circles, f"import circles: {circles}"
