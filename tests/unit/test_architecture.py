"""docs/architecture.md names files and functions (`path::name`, `path::Class.method`): each must
still exist, so the walk through one upload cannot go stale."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
REFERENCE = re.compile(r"`([\w/.-]+\.(?:py|js))::([\w.]+)`")
"""`frontend_server/api.py::segment`; a bare ``Class.method`` after one keeps its file."""
BARE_METHOD = re.compile(r"`(PetSegHandler\.\w+)`")


def references() -> list[tuple[str, str]]:
    text = PAGE.read_text()
    found = REFERENCE.findall(text)
    found += [("handler/petseg_handler.py", name) for name in BARE_METHOD.findall(text)]
    return found


def python_names(path: Path) -> set[str]:
    """Top-level functions and classes, and Class.method for their methods."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return names


def test_the_page_names_enough_to_follow_an_upload():
    assert len(references()) >= 20


@pytest.mark.parametrize(("file", "name"), references())
def test_every_named_file_and_function_exists(file: str, name: str):
    path = ROOT / file
    assert path.is_file(), f"{file} is gone"
    if path.suffix == ".py":
        assert name in python_names(path), f"{file} has no {name}"
    else:
        assert re.search(rf"\b(async\s+)?function\s+{re.escape(name)}\b", path.read_text()), name
