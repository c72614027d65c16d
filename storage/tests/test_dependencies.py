"""Storage is what the other apps build on: it imports none of them."""

import ast
from pathlib import Path

import storage

APPS_BUILT_ON_STORAGE = {"accounts", "tokens", "trading", "verification", "exchange"}


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def test_no_storage_module_imports_an_app_built_on_storage():
    root = Path(storage.__file__).parent
    offenders = sorted(
        f"{path.relative_to(root.parent)} imports {module}"
        for path in root.rglob("*.py")
        if "tests" not in path.relative_to(root).parts
        for module in imported_modules(path)
        if module.split(".")[0] in APPS_BUILT_ON_STORAGE
    )
    assert offenders == []
