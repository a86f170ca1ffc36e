"""Errors that carry a source position and render as `file:line:col` with a caret."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field


def _check_not_shadowed() -> None:
    package = sys.modules.get("optlang")
    if package is not None and not getattr(package, "__optlang_diff__", False):
        raise ImportError(
            f"the `optlang` package imported from {getattr(package, '__file__', '?')} is not optlang-diff "
            "(the differentiable-optimization compiler) but PyPI's unrelated `optlang` (LP modelling), "
            "which shadows it. Uninstall it (`pip uninstall optlang`) and reinstall optlang-diff "
            "(`pip install --force-reinstall optlang-diff`), or use separate virtual environments."
        )


_check_not_shadowed()


@dataclass(frozen=True)
class Source:
    """The text of one `.opt` file and the name it is reported under."""

    name: str
    text: str

    def line(self, lineno: int) -> str:
        lines = self.text.splitlines()
        return lines[lineno - 1] if 1 <= lineno <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """A 1-based region of a source: from (line, col) up to (end_line, end_col), end exclusive."""

    line: int
    col: int
    end_line: int
    end_col: int
    source: Source | None = field(default=None, compare=False, hash=False, repr=False)

    def __repr__(self) -> str:
        return f"{self.line}:{self.col}-{self.end_line}:{self.end_col}"

    def join(self, other: "Span") -> "Span":
        """The smallest span covering both."""
        start = min((self.line, self.col), (other.line, other.col))
        end = max((self.end_line, self.end_col), (other.end_line, other.end_col))
        return Span(start[0], start[1], end[0], end[1], self.source or other.source)


class OptError(Exception):
    """A problem in the user's `.opt` file, found at compile time."""

    def __init__(self, message: str, span: Span | None = None, detail: str = ""):
        self.message = message
        self.span = span
        self.detail = detail
        super().__init__(self.render())

    def render(self) -> str:
        span = self.span
        if span is None or span.source is None:
            head = f"error: {self.message}"
            return head + (f"\n{self.detail}" if self.detail else "")
        src = span.source
        parts = [f"{src.name}:{span.line}:{span.col}: error: {self.message}"]
        last = min(span.end_line, span.line + MAX_SHOWN_LINES - 1)
        for lineno in range(span.line, last + 1):
            text = src.line(lineno)
            start = span.col if lineno == span.line else len(text) - len(text.lstrip()) + 1
            end = span.end_col if lineno == span.end_line else len(text.rstrip()) + 1
            text, start, end = _window(text, start, end)
            parts.append(f"  {text}")
            parts.append("  " + _pad(text[: start - 1]) + "^" * max(1, end - start))
        if last < span.end_line:
            parts.append(f"  ... ({span.end_line - last} more lines)")
        if self.detail:
            parts.append(self.detail)
        return "\n".join(parts)


class NotSupportedError(OptError):
    """A construct of the language that this version cannot solve yet."""


class CallError(ValueError):
    """Bad arguments at call time: missing, extra, misshapen or out-of-domain parameters."""


MAX_SHOWN_LINES = 6  # of a span, in an error message
MAX_SHOWN_WIDTH = 120  # characters of a source line, in an error message


def _window(text: str, start: int, end: int) -> tuple:
    """At most MAX_SHOWN_WIDTH characters of a long line around the caret, cut ends marked `...`;
    returns the text shown and the caret's start and end columns in it."""
    if len(text) <= MAX_SHOWN_WIDTH:
        return text, start, end
    left = max(0, min(start - 1 - MAX_SHOWN_WIDTH // 4, len(text) - MAX_SHOWN_WIDTH))
    right = left + MAX_SHOWN_WIDTH
    shown = ("..." if left else "") + text[left:right] + ("..." if right < len(text) else "")
    shift = left - (3 if left else 0)
    return shown, start - shift, min(end - shift, len(shown) - (3 if right < len(text) else 0) + 1)


def _pad(prefix: str) -> str:
    """Blanks as wide as `prefix`, keeping its tabs so the caret lines up under tabs too."""
    return "".join("\t" if ch == "\t" else " " for ch in prefix)


def user_stacklevel() -> int:
    """The `stacklevel` for warnings.warn that points at the user's code: the first frame whose
    module is neither optlang's (its generated modules included) nor torch's."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("optlang", "torch")):
            return level
        frame, level = frame.f_back, level + 1
    return 2
