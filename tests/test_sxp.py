"""S-expressions: parsing as xend wrote them, printing, round trips, errors with positions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xend_vfb import sxp
from xend_vfb.errors import ConfigError

trees = st.recursive(
    st.text(max_size=8),
    lambda children: st.lists(children, max_size=5),
    max_leaves=30,
)


@given(trees)
def test_show_round_trip(tree):
    assert sxp.parse(sxp.show(tree)) == tree


@given(trees, st.integers(min_value=10, max_value=100))
def test_pretty_round_trip(tree, width):
    assert sxp.parse(sxp.pretty(tree, width=width)) == tree


@given(st.lists(trees, max_size=4))
def test_parse_all_round_trip(values):
    assert sxp.parseAll("\n".join(sxp.show(v) for v in values)) == values


def test_parse_xend_style():
    text = """
    # written by xend
    (vm (name demo) ; the domain
        (memory 64)
        (device (vfb (vnc 1) (vncpasswd 'two words') (display ":0.0")))
        (empty ()))
    """
    assert sxp.parse(text) == [
        "vm",
        ["name", "demo"],
        ["memory", "64"],
        ["device", ["vfb", ["vnc", "1"], ["vncpasswd", "two words"], ["display", ":0.0"]]],
        ["empty", []],
    ]


def test_escapes():
    assert sxp.parse(r'"a\"b\\c\n\t\r\x41\u00e9\U0001F600\'"') == "a\"b\\c\n\t\rAé\U0001f600'"
    assert sxp.parse("'single \"quoted\"'") == 'single "quoted"'
    assert sxp.parse('"multi\nline"') == "multi\nline"


@pytest.mark.parametrize(
    ("atom", "printed"),
    [
        ("demo", "demo"),
        ("127.0.0.1", "127.0.0.1"),
        ("/boot/vmlinuz", "/boot/vmlinuz"),
        ("", '""'),
        ("two words", '"two words"'),
        ("#not-a-comment", '"#not-a-comment"'),
        (";x", '";x"'),
        ("a(b", '"a(b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("it's", '"it\'s"'),
        ("tab\there", '"tab\\there"'),
        ("\x01", '"\\x01"'),
        ("\u2028", '"\\u2028"'),
        ("é", "é"),
    ],
)
def test_show_quotes_only_when_needed(atom, printed):
    assert sxp.show(atom) == printed
    assert sxp.parse(printed) == atom


def test_pretty_layout():
    tree = ["vm", ["name", "demo"], ["device", ["vfb", ["vnc", "1"], ["vncunused", "1"]]]]
    assert sxp.pretty(tree) == "(vm (name demo) (device (vfb (vnc 1) (vncunused 1))))"
    assert sxp.pretty(tree, width=45) == (
        "(vm\n    (name demo)\n    (device (vfb (vnc 1) (vncunused 1))))"
    )
    assert sxp.pretty(["key", "a long value " * 5], width=20) == sxp.show(
        ["key", "a long value " * 5]
    )


def test_helpers():
    tree = sxp.parse("(vm (name demo) (device (vkbd)) (device (vfb (vnc 1))) plain)")
    assert sxp.name(tree) == "vm"
    assert sxp.name("atom") is None
    assert sxp.name([]) is None
    assert sxp.name([["x"]]) is None
    assert [sxp.name(d[1]) for d in sxp.children(tree, "device")] == ["vkbd", "vfb"]
    assert len(sxp.children(tree)) == 3
    assert sxp.children("atom") == []
    assert sxp.child(tree, "name") == ["name", "demo"]
    assert sxp.child(tree, "missing") is None
    assert sxp.child(tree, "missing", ["x"]) == ["x"]
    assert sxp.childValue(tree, "name") == "demo"
    assert sxp.childValue(tree, "missing", "dflt") == "dflt"
    assert sxp.childValue(["vm", ["novalue"]], "novalue", "d") == "d"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "<sxp>:1:1: no S-expression found"),
        ("; only a comment\n", "<sxp>:1:1: no S-expression found"),
        ("(vm (name demo)", "<sxp>:1:1: '(' is never closed"),
        ("(vm\n  (name demo)\n  (memory 64", "<sxp>:3:3: '(' is never closed"),
        ("(vm))", "<sxp>:1:5: ')' without a matching '('"),
        ("(vm)\n  (extra)", "<sxp>:2:3: unexpected text after the S-expression"),
        ('(name "demo)', "<sxp>:1:7: string is never closed"),
        ('(name "demo\\', "<sxp>:1:12: string is never closed"),
        ('(name "a\\qb")', "<sxp>:1:9: unknown escape '\\q'"),
        ('(name "\\x4")', "<sxp>:1:8: bad escape '\\x4\"'"),
        ('(name "\\U00110000")', "<sxp>:1:8: bad escape '\\U00110000'"),
        ("(name de\x07mo)", "<sxp>:1:9: unexpected character U+0007 (quote it)"),
    ],
)
def test_errors(text, message):
    with pytest.raises(ConfigError) as caught:
        sxp.parse(text)
    assert str(caught.value) == message


def test_parse_file(tmp_path):
    path = tmp_path / "d.sxp"
    path.write_text("(vm\n (name demo)))")
    with pytest.raises(ConfigError) as caught:
        sxp.parseFile(path)
    assert str(caught.value) == f"{path}:2:14: ')' without a matching '('"
    with pytest.raises(ConfigError) as caught:
        sxp.parseFile(tmp_path / "missing.sxp")
    assert (
        str(caught.value) == f"{tmp_path / 'missing.sxp'}: cannot read: No such file or directory"
    )
    path.write_bytes(b"(vm \xff)")
    with pytest.raises(ConfigError) as caught:
        sxp.parseFile(path)
    assert str(caught.value) == f"{path}: not UTF-8 text (byte 4)"
