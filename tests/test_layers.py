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
        "index": {"index", "embedders", "qdrant_client", "qdrant_edge"},
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
