"""The package's floors import only downward (docs/architecture.md):

    cli -> experiments / integrations -> training -> evaluation -> models -> layers / data -> kernels

read from every import statement of every module (including imports inside functions); the
top-level helpers (``longssm.configs``) belong to no floor and may be imported from any.
"""

import ast
from pathlib import Path

import longssm

RANK = {"kernels": 0, "layers": 1, "data": 1, "models": 2, "evaluation": 3, "training": 4,
        "experiments": 5, "integrations": 5, "cli": 6}
ROOT = Path(longssm.__file__).parent


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def test_every_floor_is_known():
    floors = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert floors <= set(RANK), f"floors without a rank: {floors - set(RANK)}"


def test_no_import_goes_up_or_sideways():
    bad = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if len(parts) < 2:
            continue
        floor = parts[0]
        for line, module in imports(path):
            bits = module.split(".")
            if bits[0] == "longssm" and len(bits) > 1 and bits[1] in RANK and bits[1] != floor \
                    and RANK[bits[1]] >= RANK[floor]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "imports against the floors:\n" + "\n".join(bad)


def test_the_check_sees_a_violation(tmp_path):
    """The checker itself can fail: an upward import in a scratch module is found."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from longssm.cli.commands import cmd_train\n")
    assert list(imports(f)) == [(2, "longssm.cli.commands")]
