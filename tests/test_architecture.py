"""The structure's rules, checked on the source itself: no import cycles, no engine importing another,
short files and functions; and the unit-of-work records survive their files unchanged."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "framework"
ENGINE_MODULES = {"pytorch_cpu", "onnxruntime_cpu", "pytorch_cuda", "onnxruntime_cuda", "onnxruntime_tensorrt", "tensorrt_native"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every framework module ``path`` imports, at the top or inside a function (``from framework.x import y``
    counts ``framework.x`` and, when it is a module, ``framework.x.y``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("framework")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("framework"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_engine_module_imports_another_engine_module():
    engines_dir = PACKAGE / "engines"
    assert {p.stem for p in engines_dir.glob("*.py")} >= ENGINE_MODULES
    from framework.engines import ENGINES

    assert {path.split(":")[0].rsplit(".", 1)[1] for path in ENGINES.values()} == ENGINE_MODULES
    for stem in ENGINE_MODULES:
        others = {f"framework.engines.{o}" for o in ENGINE_MODULES - {stem}}
        assert not imports_of(engines_dir / f"{stem}.py") & others, f"{stem} imports another engine module"


def python_files() -> list[Path]:
    return sorted(p for folder in ("framework", "tests", "benchmarks", "models") for p in (REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_files_stay_under_400_lines_and_functions_under_50(path):
    lines = path.read_text().splitlines()
    assert len(lines) <= 400, f"{path.relative_to(REPO)} has {len(lines)} lines"
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= 50, f"{path.relative_to(REPO)}:{node.lineno} {node.name}() has {length} lines"


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_the_tree_passes_ruff(command):
    """The linter and formatter configured in pyproject.toml ([tool.ruff]); the test extra installs ruff."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
