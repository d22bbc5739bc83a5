"""The one error type of the compiler: a problem with a place in the spec file, a message and maybe a fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SpecError:
    """One problem in a spec: where (file, line, column, path), what, and a computed fix when there is one.

    ``line`` and ``column`` are 1-based, like compilers print them; 0 means "the file as a whole".
    ``detail`` holds extra lines such as the size arithmetic behind the message.
    """

    file: str
    line: int
    column: int
    path: str
    message: str
    fix: str | None = None
    detail: tuple[str, ...] = ()

    def location(self) -> str:
        """``file:line:col`` (or just ``file`` when the problem has no position)."""
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"

    def headline(self) -> str:
        """The first line of the message: ``FILE:LINE:COL: error: PATH: MESSAGE``."""
        where = f"{self.path}: " if self.path else ""
        return f"{self.location()}: error: {where}{self.message}"

    def render(self) -> str:
        """The headline, then the arithmetic and the fix indented beneath it."""
        lines = [self.headline()]
        lines += [f"    {d}" for d in self.detail]
        if self.fix:
            lines.append(f"    fix: {self.fix}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["detail"] = list(self.detail)
        return data


class SpecInvalid(Exception):
    """Raised by the Python API (``archspec.load``) when a spec has errors; carries all of them."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.render() for e in errors))
