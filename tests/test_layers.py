"""The import-direction rule: Gradio only in app/, Qdrant only in index/, nothing imports app."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ["app", "embedders", "index", "projections"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def _room_files():
    for room in ROOMS:
        for f in sorted((ROOT / room).rglob("*.py")):
            yield room, f


def test_rooms_exist():
    for room in ROOMS + ["tests", "benchmarks"]:
        assert (ROOT / room).is_dir(), room
    for f in ["app.py", "README.md", "requirements.txt", "docs/DESIGN.md", ".ci/run"]:
        assert (ROOT / f).exists(), f
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text()


def test_import_direction():
    allowed = {
        "app": {"app", "index", "projections", "gradio", "gradio_client"},
        "index": {"index", "embedders", "projections", "qdrant_client", "qdrant_edge"},
        "embedders": {"embedders"},
        "projections": {"projections"},
    }
    project = set(ROOMS) | {"gradio", "gradio_client", "qdrant_client", "qdrant_edge"}
    bad = []
    for room, f in _room_files():
        for mod in _imports(f) & project:
            if mod not in allowed[room]:
                bad.append(f"{f.relative_to(ROOT)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_rule_catches_a_violation(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import os\nfrom gradio import Blocks\nimport qdrant_client.models\n")
    assert {"gradio", "qdrant_client"} <= _imports(f)


# ---- import graph: cycles inside app/, families of embedders importing each other ----------
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    return {_module_name(f): f for _room, f in _room_files()}


def _resolve(mod: str, base: str | None, level: int, is_pkg: bool) -> str:
    if level == 0:
        return mod
    pkg = base.split(".") if is_pkg else base.split(".")[:-1]
    pkg = pkg[: len(pkg) - (level - 1)]
    return ".".join(pkg + ([mod] if mod else []))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> project modules it imports, at any depth (imports inside functions count)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", name, node.level, is_pkg)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                while t and t not in modules:  # `import a.b.c` imports a.b.c (or the nearest package)
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]], within: str) -> list[str] | None:
    """A cycle among the modules under `within` (a package name), or None."""
    nodes = {m for m in graph if m == within or m.startswith(within + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m] & nodes):
            # a package's __init__ importing its own submodules is how packages are built
            if d.startswith(m + "."):
                continue
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(nodes):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycles_inside_app():
    cycle = find_cycle(import_graph(_project_modules()), "app")
    assert cycle is None, " -> ".join(cycle)


def test_cycle_check_catches_a_cycle():
    graph = {"app": set(), "app.a": {"app.b"}, "app.b": {"app.c"}, "app.c": {"app.a"}, "app.d": {"app.a"}}
    assert find_cycle(graph, "app") == ["app.a", "app.b", "app.c", "app.a"]
    assert find_cycle({"app": set(), "app.a": {"app.b"}, "app.b": set()}, "app") is None


def test_function_level_imports_count(tmp_path):
    mods = {"app": tmp_path / "app" / "__init__.py", "app.x": tmp_path / "app" / "x.py",
            "app.y": tmp_path / "app" / "y.py"}
    for p in mods.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    mods["app"].write_text("")
    mods["app.x"].write_text("def f():\n    from app import y\n")
    mods["app.y"].write_text("from . import x\n")
    assert find_cycle(import_graph(mods), "app") in (["app.x", "app.y", "app.x"], ["app.y", "app.x", "app.y"])


def test_embedder_families_do_not_import_each_other():
    import embedders

    families = set(embedders.FAMILY_MODULES)
    graph = import_graph(_project_modules())
    bad = []
    for mod, deps in graph.items():
        parts = mod.split(".")
        if parts[0] != "embedders" or len(parts) < 2 or parts[1] not in families:
            continue
        for d in deps:
            dparts = d.split(".")
            if dparts[0] == "embedders" and len(dparts) > 1 and dparts[1] in families and dparts[1] != parts[1]:
                bad.append(f"{mod} imports {d}")
    assert not bad, "\n".join(bad)
