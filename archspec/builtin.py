"""The specs that ship with archspec (``specs/`` of the repository, ``archspec/specs`` inside the wheel), found
by name: ``archspec check conv_gan``, ``archspec list``, ``archspec new my_gan --from dcgan64``.

A built-in spec's name is its path under ``specs/`` without ``.yaml``: ``conv_gan``, ``broken/pad``. A path that
exists always wins over a name. Imports neither torch nor rich.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".yaml"
_NAME_LINE = re.compile(r"^name:[ \t]*[^\s#]*", re.MULTILINE)
SPEC_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # the spec's own pattern for `name:` (archspec.spec.Spec.name)


@dataclass(frozen=True)
class BuiltinSpec:
    """One shipped spec: its name, its file and the first line of the comment that opens it."""

    name: str
    path: Path

    @property
    def summary(self) -> str:
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                return line.lstrip("# ").strip()
            if line.strip():
                break
        return ""


def specs_dir() -> Path:
    """Where the shipped specs are: inside the installed package, or ``specs/`` of a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "specs"
    return packaged if packaged.is_dir() else here.parent / "specs"


def builtin_specs() -> list[BuiltinSpec]:
    """Every shipped spec, by name (sub-folders such as ``broken/`` after the top level)."""
    root = specs_dir()
    if not root.is_dir():
        return []
    found = [BuiltinSpec(p.relative_to(root).with_suffix("").as_posix(), p) for p in root.rglob(f"*{SUFFIX}")]
    return sorted(found, key=lambda s: (s.name.count("/"), s.name))


def find_spec(argument: str) -> str:
    """The file a command-line SPEC names: the path itself when it exists (or looks like a file), else the
    built-in spec of that name, else the argument unchanged (the command then reports the missing file)."""
    if Path(argument).exists() or argument.endswith((SUFFIX, ".yml")):
        return argument
    for spec in builtin_specs():
        if spec.name == argument:
            return str(spec.path)
    return argument


def renamed(text: str, name: str) -> str:
    """Spec ``text`` with its top-level ``name:`` set to ``name``, comments and layout kept."""
    if _NAME_LINE.search(text):
        return _NAME_LINE.sub(f"name: {name}", text, count=1)
    return f"name: {name}\n{text}"
