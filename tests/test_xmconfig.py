"""xm config files are read, never run: what is accepted, what is refused, and proof of it."""

import ast
import inspect
import sys

import pytest

from xend_vfb import xmconfig
from xend_vfb.errors import ConfigError

# Audit events seen while `_watching` is set: ast.parse raises "compile" (source to syntax
# tree only); running code would raise "exec", and its effects "os.system", "open", ...
_watching: list[tuple[str, tuple]] = []
_active = [False]


def _audit(event: str, args: tuple) -> None:
    if _active[0]:
        _watching.append((event, args))


sys.addaudithook(_audit)


def _events(action):
    _watching.clear()
    _active[0] = True
    try:
        action()
    finally:
        _active[0] = False
    return list(_watching)


def test_accepts_what_real_configs_contain():
    config = xmconfig.parse(
        "# comment\n"
        "name = 'demo'  # trailing comment\n"
        'kernel = "/boot/vmlinuz-" "6.1"\n'
        "extra = 'console=hvc0 ' + 'root=/dev/xvda1' + \" ro\"\n"
        "memory = 64\n"
        "cpu_weight = -1\n"
        "maxmem = +128\n"
        "shadow = 1.5\n"
        "acpi = True\n"
        "apic = False\n"
        "vfb = [ 'vnc=1', ]\n"
        "disk = ('phy:/dev/x,xvda,w', ['nested', 2])\n"
        "vif = []\n"
        "long = '''a\nb'''\n",
        "demo.cfg",
    )
    assert config.values == {
        "name": "demo",
        "kernel": "/boot/vmlinuz-6.1",
        "extra": "console=hvc0 root=/dev/xvda1 ro",
        "memory": 64,
        "cpu_weight": -1,
        "maxmem": 128,
        "shadow": 1.5,
        "acpi": True,
        "apic": False,
        "vfb": ["vnc=1"],
        "disk": ["phy:/dev/x,xvda,w", ["nested", 2]],
        "vif": [],
        "long": "a\nb",
    }
    assert list(config.values) == list(config.lines)
    assert config.lines["name"] == 2
    assert config.lines["vfb"] == 11
    assert config.path == "demo.cfg"


BAD = [
    # dangerous Python: nothing of it may run
    ("x = __import__('os').system('touch /tmp/pwned')", "function call"),
    ("x = open('/etc/shadow').read()", "function call"),
    ("x = open('/etc/shadow')", "function call"),
    ("x = eval('1')", "function call"),
    ("os.system('x')", "function call"),
    ("x = os.path", "attribute access"),
    ("x = ''.join", "attribute access"),
    ("x = lambda: 1", "lambda"),
    ("x = f'{__import__(\"os\")}'", "f-string"),
    ("x = [c for c in 'ab']", "list comprehension"),
    ("x = (c for c in 'ab')", "generator expression"),
    ("x = {'a': 1}", "dictionary"),
    ("x = {1}", "set"),
    ("x = 'abc'[0]", "subscript"),
    ("x = 1 if y else 2", "conditional expression"),
    ("x = 1 < 2", "comparison"),
    ("x = 1 and 2", "boolean operator"),
    ("x = not 1", "unary operator"),
    ("x = (y := 1)", "assignment expression"),
    ("x = [*y]", "starred expression"),
    ("x = b'bytes'", "bytes value"),
    ("x = None", "None"),
    ("x = ...", "ellipsis value"),
    ("x = 1j", "complex value"),
    ("x = y", "name 'y'"),
    ("x = __builtins__", "name '__builtins__'"),
]


@pytest.mark.parametrize(("source", "what"), BAD)
def test_refused_values(source, what):
    hint = "values must be strings, numbers, booleans or lists of them"
    with pytest.raises(ConfigError) as caught:
        xmconfig.parse("name = 'ok'\n" + source + "\n", "bad.cfg")
    assert str(caught.value) == f"bad.cfg:2: {what} is not allowed ({hint})"


STATEMENTS = [
    ("import os", "import statement"),
    ("from os import system", "import statement"),
    ("def f():\n    pass", "function definition"),
    ("class C:\n    pass", "class definition"),
    ("x += 1", "augmented assignment"),
    ("x: int = 1", "annotated assignment"),
    ("if True:\n    x = 1", "'if' statement"),
    ("for i in []:\n    pass", "'for' loop"),
    ("while False:\n    pass", "'while' loop"),
    ("with open('x') as f:\n    pass", "'with' statement"),
    ("try:\n    pass\nexcept Exception:\n    pass", "'try' statement"),
    ("del x", "'del' statement"),
    ("global x", "'global' statement"),
    ("assert x", "'assert' statement"),
    ("raise SystemExit", "'raise' statement"),
    ("pass", "'pass' statement"),
]


@pytest.mark.parametrize(("source", "what"), STATEMENTS)
def test_refused_statements(source, what):
    with pytest.raises(ConfigError) as caught:
        xmconfig.parse("name = 'ok'\n" + source + "\n", "bad.cfg")
    assert (
        str(caught.value) == f"bad.cfg:2: {what} is not allowed (only 'name = value' assignments)"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1 - 2", "bad.cfg:1: operator '-' is not allowed (only '+' between strings)"),
        ("x = 'a' * 1000", "bad.cfg:1: operator '*' is not allowed (only '+' between strings)"),
        ("x = '%s' % 'a'", "bad.cfg:1: operator '%' is not allowed (only '+' between strings)"),
        ("x = 1 + 2", "bad.cfg:1: '+' is only allowed between strings"),
        ("x = [1] + [2]", "bad.cfg:1: '+' is only allowed between strings"),
        (
            "x = -'a'",
            "bad.cfg:1: unary operator is not allowed "
            "(values must be strings, numbers, booleans or lists of them)",
        ),
        (
            "'just a string'",
            "bad.cfg:1: a value on its own is not allowed (only 'name = value' assignments)",
        ),
        (
            "x = y = 1",
            "bad.cfg:1: chained assignment is not allowed (only 'name = value' assignments)",
        ),
        (
            "x, y = 1, 2",
            "bad.cfg:1: assignment to anything but a name is not allowed "
            "(only 'name = value' assignments)",
        ),
        (
            "os.environ = 1",
            "bad.cfg:1: assignment to anything but a name is not allowed "
            "(only 'name = value' assignments)",
        ),
        ("x = 1\ny = 2\nx = 3", "bad.cfg:3: 'x' is assigned twice (first on line 1)"),
        (
            "name = 'demo",
            "bad.cfg:1: syntax error: unterminated string literal (detected at line 1)",
        ),
        ("vfb = [ 'vnc=1'", "bad.cfg:1: syntax error: '[' was never closed"),
        (
            'print "hello"',
            "bad.cfg:1: syntax error: Missing parentheses in call to 'print'. "
            "Did you mean print(...)?",
        ),
        (
            "memory = 0755",
            "bad.cfg:1: syntax error: leading zeros in decimal integer literals "
            "are not permitted; use an 0o prefix for octal integers",
        ),
        ("x = 1\n\0", "bad.cfg: contains a NUL character (not a config file)"),
    ],
)
def test_refused_other(source, message):
    with pytest.raises(ConfigError) as caught:
        xmconfig.parse(source, "bad.cfg")
    assert str(caught.value) == message


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(ConfigError) as caught:
        xmconfig.parse("x = " + "[" * 300 + "]" * 300, "deep.cfg")
    assert str(caught.value).startswith("deep.cfg:1: syntax error: ")
    source = "x = " + " + ".join(["'a'"] * 1500)
    assert xmconfig.parse(source, "long.cfg").values["x"] == "a" * 1500
    with pytest.raises(ConfigError) as caught:
        xmconfig.parse("x = " + " + ".join(["'a'"] * 300_000), "huge.cfg")
    assert str(caught.value) == "huge.cfg: too deeply nested"


def test_read_errors(tmp_path):
    with pytest.raises(ConfigError) as caught:
        xmconfig.read(tmp_path / "missing.cfg")
    assert (
        str(caught.value) == f"{tmp_path / 'missing.cfg'}: cannot read: No such file or directory"
    )
    big = tmp_path / "big.cfg"
    big.write_bytes(b"#" * (xmconfig.MAX_SIZE + 1))
    with pytest.raises(ConfigError) as caught:
        xmconfig.read(big)
    assert str(caught.value) == f"{big}: larger than 1024 KiB (not a config file)"
    latin = tmp_path / "latin.cfg"
    latin.write_bytes(b"name = '\xe9'\n")
    with pytest.raises(ConfigError) as caught:
        xmconfig.read(latin)
    assert str(caught.value) == f"{latin}: not UTF-8 text (byte 8)"
    good = tmp_path / "good.cfg"
    good.write_text("name = 'd\u00e9mo'\n")
    assert xmconfig.read(good).values == {"name": "d\u00e9mo"}


def test_nothing_is_executed(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.cfg"
    evil = [
        f"__import__('os').system('touch {marker}')",
        f"x = __import__('os').system('touch {marker}')",
        f"x = open('{marker}', 'w')",
        f"x = [open('{marker}', 'w') for _ in '1']",
        f"x = f\"{{open('{marker}', 'w')}}\"",
        f"x = (lambda: open('{marker}', 'w'))()",
        f"import os\nos.system('touch {marker}')",
        f"x = 1 if open('{marker}', 'w') else 2",
    ]
    # The hook does see code running: this is what a config that ran would look like.
    seen = _events(lambda: exec(compile("y = 1", "<probe>", "exec"), {}))
    assert "exec" in [event for event, _ in seen]
    for source in evil:
        path.write_text(f"name = 'x'\n{source}\n")
        events = _events(lambda: pytest.raises(ConfigError, xmconfig.read, path))
        names = {event for event, _ in events}
        assert "exec" not in names, source
        assert not names & {"os.system", "subprocess.Popen", "os.exec", "os.posix_spawn"}
        opened = [args[0] for event, args in events if event == "open"]
        assert all(str(p) == str(path) for p in opened), opened
        assert not marker.exists(), source


def test_module_never_calls_eval_exec_or_compile():
    tree = ast.parse(inspect.getsource(xmconfig))
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not called & {"eval", "exec", "compile", "__import__"}
