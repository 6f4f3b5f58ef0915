"""Read an xm config file without running it.

xm executed its config files as Python, so a config could run any code as root.  Here the
file is only parsed (`ast.parse` builds a syntax tree and runs nothing) and the tree is
walked against a whitelist: ``name = value`` assignments whose values are strings,
numbers, booleans, lists or tuples of those, and ``+`` between strings.  Anything else is
refused with ``file:line: <reason>``.
"""

import ast
from dataclasses import dataclass
from pathlib import Path

from xend_vfb.errors import ConfigError

__all__ = ["XmValue", "XmConfig", "parse", "read", "MAX_SIZE"]

XmValue = str | int | float | bool | list["XmValue"]

#: Larger files are refused unread: a config is a few hundred bytes.
MAX_SIZE = 1024 * 1024

_ONLY_VALUES = "values must be strings, numbers, booleans or lists of them"
_ONLY_ASSIGNMENTS = "only 'name = value' assignments"

# Names for what users wrote, for "<what> is not allowed"; the rest use the node's class.
_EXPRESSIONS: dict[type[ast.AST], str] = {
    ast.Call: "function call",
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Lambda: "lambda",
    ast.JoinedStr: "f-string",
    ast.Dict: "dictionary",
    ast.DictComp: "dictionary comprehension",
    ast.Set: "set",
    ast.SetComp: "set comprehension",
    ast.ListComp: "list comprehension",
    ast.GeneratorExp: "generator expression",
    ast.Compare: "comparison",
    ast.UnaryOp: "unary operator",
    ast.BoolOp: "boolean operator",
    ast.IfExp: "conditional expression",
    ast.NamedExpr: "assignment expression",
    ast.Starred: "starred expression",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}

_STATEMENTS: dict[type[ast.AST], str] = {
    ast.Import: "import statement",
    ast.ImportFrom: "import statement",
    ast.FunctionDef: "function definition",
    ast.AsyncFunctionDef: "function definition",
    ast.ClassDef: "class definition",
    ast.AugAssign: "augmented assignment",
    ast.AnnAssign: "annotated assignment",
    ast.If: "'if' statement",
    ast.For: "'for' loop",
    ast.AsyncFor: "'for' loop",
    ast.While: "'while' loop",
    ast.With: "'with' statement",
    ast.AsyncWith: "'with' statement",
    ast.Try: "'try' statement",
    ast.TryStar: "'try' statement",
    ast.Match: "'match' statement",
    ast.Delete: "'del' statement",
    ast.Global: "'global' statement",
    ast.Nonlocal: "'nonlocal' statement",
    ast.Assert: "'assert' statement",
    ast.Raise: "'raise' statement",
    ast.Return: "'return' statement",
    ast.Pass: "'pass' statement",
    ast.Break: "'break' statement",
    ast.Continue: "'continue' statement",
}


@dataclass(frozen=True)
class XmConfig:
    """The assignments of one xm config file, in file order, and the line of each."""

    path: str
    values: dict[str, XmValue]
    lines: dict[str, int]


class _Refused(Exception):
    """A construct outside the whitelist, at `node`."""

    def __init__(self, node: ast.AST, reason: str) -> None:
        super().__init__(reason)
        self.line = getattr(node, "lineno", 1)
        self.reason = reason


def _notAllowed(node: ast.AST, hint: str) -> _Refused:
    what = _STATEMENTS.get(type(node)) or _EXPRESSIONS.get(type(node))
    if isinstance(node, ast.Name):
        what = f"name {node.id!r}"
    elif isinstance(node, ast.Constant):
        what = "None" if node.value is None else f"{type(node.value).__name__} value"
    elif what is None:
        what = f"{type(node).__name__} expression"
    return _Refused(node, f"{what} is not allowed ({hint})")


def _value(node: ast.expr) -> XmValue:
    """The literal value of `node`, refusing anything outside the whitelist."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        return [_value(item) for item in node.elts]
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) in (int, float)
    ):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, ast.BinOp):
        # 'a' + 'b' + 'c' nests to the left: walk the chain in a loop, not by recursion.
        top, operands = node, []
        while isinstance(node, ast.BinOp):
            if not isinstance(node.op, ast.Add):
                raise _operatorRefused(node)
            operands.append(node.right)
            node = node.left
        operands.append(node)
        values = [_value(operand) for operand in reversed(operands)]
        if not all(isinstance(value, str) for value in values):
            raise _Refused(top, "'+' is only allowed between strings")
        return "".join(values)
    raise _notAllowed(node, _ONLY_VALUES)


def _operatorRefused(node: ast.BinOp) -> _Refused:
    symbol = {
        ast.Sub: "-",
        ast.Mult: "*",
        ast.Div: "/",
        ast.FloorDiv: "//",
        ast.Mod: "%",
        ast.Pow: "**",
        ast.MatMult: "@",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.BitOr: "|",
        ast.BitAnd: "&",
        ast.BitXor: "^",
    }[type(node.op)]
    return _Refused(node, f"operator '{symbol}' is not allowed (only '+' between strings)")


def _assignment(statement: ast.stmt) -> tuple[str, XmValue]:
    if isinstance(statement, ast.Expr):
        _value(statement.value)  # a call here is reported as a call
        raise _Refused(statement, f"a value on its own is not allowed ({_ONLY_ASSIGNMENTS})")
    if not isinstance(statement, ast.Assign):
        raise _notAllowed(statement, _ONLY_ASSIGNMENTS)
    if len(statement.targets) != 1:
        raise _Refused(statement, f"chained assignment is not allowed ({_ONLY_ASSIGNMENTS})")
    target = statement.targets[0]
    if not isinstance(target, ast.Name):
        raise _Refused(
            statement, f"assignment to anything but a name is not allowed ({_ONLY_ASSIGNMENTS})"
        )
    return target.id, _value(statement.value)


def parse(text: str, path: str = "<config>") -> XmConfig:
    """Parse xm config `text`; `path` names it in error messages."""
    if "\0" in text:
        raise ConfigError(f"{path}: contains a NUL character (not a config file)")
    try:
        tree = ast.parse(text, filename=path, mode="exec")
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno or 1}: syntax error: {e.msg}") from None
    except (RecursionError, MemoryError):
        raise ConfigError(f"{path}: too deeply nested") from None
    values: dict[str, XmValue] = {}
    lines: dict[str, int] = {}
    for statement in tree.body:
        try:
            key, value = _assignment(statement)
        except _Refused as e:
            raise ConfigError(f"{path}:{e.line}: {e.reason}") from None
        except RecursionError:
            raise ConfigError(f"{path}:{statement.lineno}: too deeply nested") from None
        if key in values:
            raise ConfigError(
                f"{path}:{statement.lineno}: {key!r} is assigned twice (first on line {lines[key]})"
            )
        values[key] = value
        lines[key] = statement.lineno
    return XmConfig(path, values, lines)


def read(path: str | Path) -> XmConfig:
    """Read and parse the xm config file at `path`."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SIZE + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    if len(data) > MAX_SIZE:
        raise ConfigError(f"{path}: larger than {MAX_SIZE // 1024} KiB (not a config file)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return parse(text, str(path))
