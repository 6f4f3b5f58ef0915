"""S-expressions as xend wrote them: ``(vm (name demo) (device (vfb (vnc 1))))``.

A parsed expression is a `str` (an atom: a bare symbol or a quoted string; SXP has no
other types, so ``64`` is the string ``"64"``) or a `list` of expressions.  Quoted strings
take ``"..."`` or ``'...'`` with backslash escapes; ``;`` or ``#`` at the start of a token
begins a comment that runs to the end of the line.  `show` and `pretty` print a tree so
that `parse` gives the same tree back.  Errors are `ConfigError` naming line and column.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from xend_vfb.errors import ConfigError

__all__ = [
    "SExpr",
    "parse",
    "parseAll",
    "parseFile",
    "show",
    "pretty",
    "name",
    "child",
    "children",
    "childValue",
]

SExpr = str | list["SExpr"]

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_PRINT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", '"': '\\"'}
_DELIMITERS = "()\"'"
_COMMENT_STARTS = ";#"


@dataclass(frozen=True)
class _Token:
    kind: str  # "(", ")" or "atom"
    text: str
    line: int
    column: int


class _Scanner:
    """Splits text into tokens, tracking the line and column of each."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0
        self.line = 1
        self.column = 1

    def error(self, line: int, column: int, reason: str) -> ConfigError:
        return ConfigError(f"{self.source}:{line}:{column}: {reason}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def advance(self) -> str:
        c = self.text[self.pos]
        self.pos += 1
        if c == "\n":
            self.line += 1
            self.column = 1
        else:
            self.column += 1
        return c

    def tokens(self) -> Iterator[_Token]:
        while True:
            c = self.peek()
            if not c:
                return
            if c.isspace():
                self.advance()
            elif c in _COMMENT_STARTS:
                while self.peek() not in ("", "\n"):
                    self.advance()
            elif c in "()":
                yield _Token(c, c, self.line, self.column)
                self.advance()
            elif c in "\"'":
                yield self.quoted()
            else:
                yield self.bare()

    def quoted(self) -> _Token:
        line, column = self.line, self.column
        quote = self.advance()
        chars = []
        while True:
            c = self.peek()
            if not c:
                raise self.error(line, column, "string is never closed")
            self.advance()
            if c == quote:
                return _Token("atom", "".join(chars), line, column)
            if c == "\\":
                chars.append(self.escape())
            else:
                chars.append(c)

    def escape(self) -> str:
        line, column = self.line, self.column - 1
        c = self.peek()
        if not c:
            raise self.error(line, column, "string is never closed")
        self.advance()
        if c in _ESCAPES:
            return _ESCAPES[c]
        if c in _HEX_ESCAPES:
            digits = self.text[self.pos : self.pos + _HEX_ESCAPES[c]]
            valid = len(digits) == _HEX_ESCAPES[c] and all(
                d in "0123456789abcdefABCDEF" for d in digits
            )
            if not valid or int(digits, 16) > 0x10FFFF:
                raise self.error(line, column, f"bad escape '\\{c}{digits}'")
            for _ in digits:
                self.advance()
            return chr(int(digits, 16))
        raise self.error(line, column, f"unknown escape '\\{c}'")

    def bare(self) -> _Token:
        line, column = self.line, self.column
        chars = []
        while True:
            c = self.peek()
            if not c or c.isspace() or c in _DELIMITERS:
                return _Token("atom", "".join(chars), line, column)
            if not c.isprintable():
                raise self.error(
                    self.line, self.column, f"unexpected character U+{ord(c):04X} (quote it)"
                )
            chars.append(self.advance())


def _parseTop(text: str, source: str) -> list[tuple[SExpr, _Token]]:
    """Every top-level expression with the token it starts at."""
    scanner = _Scanner(text, source)
    top: list[tuple[SExpr, _Token]] = []
    stack: list[tuple[list[SExpr], _Token]] = []
    for token in scanner.tokens():
        if token.kind == ")":
            if not stack:
                raise scanner.error(token.line, token.column, "')' without a matching '('")
            stack.pop()
            continue
        value: SExpr = [] if token.kind == "(" else token.text
        if stack:
            stack[-1][0].append(value)
        else:
            top.append((value, token))
        if isinstance(value, list):
            stack.append((value, token))
    if stack:
        opened = stack[-1][1]
        raise scanner.error(opened.line, opened.column, "'(' is never closed")
    return top


def parseAll(text: str, source: str = "<sxp>") -> list[SExpr]:
    """Parse every expression in `text`; `source` names the text in error messages."""
    return [value for value, _ in _parseTop(text, source)]


def parse(text: str, source: str = "<sxp>") -> SExpr:
    """Parse `text`, which must hold exactly one expression."""
    top = _parseTop(text, source)
    if not top:
        raise ConfigError(f"{source}:1:1: no S-expression found")
    if len(top) > 1:
        extra = top[1][1]
        raise ConfigError(
            f"{source}:{extra.line}:{extra.column}: unexpected text after the S-expression"
        )
    return top[0][0]


def parseFile(path: str | Path) -> SExpr:
    """Read and parse one expression from the file at `path`; errors name the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from e
    return parse(text, str(path))


def _showAtom(atom: str) -> str:
    bare = (
        atom != ""
        and atom[0] not in _COMMENT_STARTS
        and all(c.isprintable() and not c.isspace() and c not in _DELIMITERS for c in atom)
    )
    if bare:
        return atom
    out = []
    for c in atom:
        if c in _PRINT_ESCAPES:
            out.append(_PRINT_ESCAPES[c])
        elif c.isprintable():
            out.append(c)
        elif ord(c) < 0x100:
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) < 0x10000:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    return '"' + "".join(out) + '"'


def show(sexpr: SExpr) -> str:
    """Print `sexpr` on one line."""
    if isinstance(sexpr, str):
        return _showAtom(sexpr)
    return "(" + " ".join(show(item) for item in sexpr) + ")"


def pretty(sexpr: SExpr, width: int = 80, indent: int = 0) -> str:
    """Print `sexpr` indented, one child per line where the one-line form would not fit."""
    flat = show(sexpr)
    if isinstance(sexpr, str) or indent + len(flat) <= width:
        return flat
    if not any(isinstance(item, list) for item in sexpr):
        return flat  # a list of atoms, like (key value), stays on one line
    head, *rest = sexpr
    inner = " " * (indent + 4)
    lines = [f"({pretty(head, width, indent + 1)}"]
    lines.extend(inner + pretty(item, width, indent + 4) for item in rest)
    return "\n".join(lines) + ")"


def name(sexpr: SExpr) -> str | None:
    """The head symbol of a list like ``(vfb ...)``, or None for an atom or a list without one."""
    if isinstance(sexpr, list) and sexpr and isinstance(sexpr[0], str):
        return sexpr[0]
    return None


def children(sexpr: SExpr, childName: str | None = None) -> list[list[SExpr]]:
    """The list children of `sexpr` (after its head), only those named `childName` if given."""
    if not isinstance(sexpr, list):
        return []
    return [
        item
        for item in sexpr[1:]
        if isinstance(item, list) and (childName is None or name(item) == childName)
    ]


def child(sexpr: SExpr, childName: str, default: SExpr | None = None) -> SExpr | None:
    """The first child named `childName` (``(name ...)``), or `default`."""
    found = children(sexpr, childName)
    return found[0] if found else default


def childValue(sexpr: SExpr, childName: str, default: SExpr | None = None) -> SExpr | None:
    """The value of ``(childName value)`` in `sexpr`, or `default` when there is none."""
    found = child(sexpr, childName)
    if found is None or len(found) < 2:
        return default
    return found[1]
