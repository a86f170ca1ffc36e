"""Tests of the syntax layer: text to AST, and the messages for malformed text."""
from __future__ import annotations

import dataclasses
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optlang.errors import OptError, Span
from optlang.syntax import ast
from optlang.syntax.parser import parse

# The example programs of LANGUAGE.md, verbatim.
RIDGE = """\
# ridge.opt: ridge regression, differentiable in X, y and lam
problem ridge

dim n, d
param X[n, d], y[n]
param lam > 0
var w[d]

minimize 0.5 * sumsq(X @ w - y) + 0.5 * lam * sumsq(w)
"""
QP = """\
# qp.opt: the OptNet layer
problem qp

dim n, m, p
param Q[n, n] psd, c[n], G[m, n], h[m], A[p, n], b[p]
var z[n]

minimize 0.5 * quad(z, Q) + dot(c, z)
subject to
  ineq: G @ z <= h
  eq:   A @ z == b
"""
SPARSEMAX = """\
# sparsemax.opt: Euclidean projection onto the probability simplex
problem sparsemax
dim n
param v[n]
var x[n]
minimize 0.5 * sumsq(x - v)
subject to
  x >= 0
  sum(x) == 1
"""
LASSO = """\
# lasso.opt: a nonsmooth objective handled by its proximal operator
problem lasso
dim n, d
param X[n, d], y[n], lam >= 0
var w[d]
minimize 0.5 * sumsq(X @ w - y) + lam * norm1(w)
"""
DEQ = """\
# deq.opt: an equilibrium (fixed-point) layer
problem deq
dim d, k
param W[d, d], U[d, k], u[k], bias[d]
var z[d]
fixed_point z = tanh(W @ z + U @ u + bias)
"""
KEPLER = """\
# kepler.opt: a root-finding problem
problem kepler
param M, e in [0, 1)
var E
root E - e * sin(E) - M
"""
OPTIONS = """\
options
  solver = "auto"        # or "newton", "pgd", "fista", "ipm", "admm", "anderson"
  tol = 1e-6
  max_iter = 500
  backward = "auto"      # or "direct", "cg", "gmres", "neumann", "unroll"
"""


def sexpr(node) -> str:
    """A compact, span-free rendering of an expression, to state expected trees briefly."""
    if isinstance(node, ast.BinaryOp):
        return f"({node.op} {sexpr(node.lhs)} {sexpr(node.rhs)})"
    if isinstance(node, ast.UnaryOp):
        return f"({node.op} {sexpr(node.operand)})"
    if isinstance(node, ast.Transpose):
        return f"(' {sexpr(node.operand)})"
    if isinstance(node, ast.NameRef):
        return node.id
    if isinstance(node, ast.Number):
        return node.text
    if isinstance(node, ast.Call):
        kws = [f"{k.name.id}={sexpr(k.value)}" for k in node.kwargs]
        return f"({node.func.id} {' '.join([sexpr(a) for a in node.args] + kws)})"
    if isinstance(node, ast.ArrayLiteral):
        return f"{node.kind}[{', '.join(getattr(e, 'id', None) or e.text for e in node.shape)}]"
    raise TypeError(node)


def expr_of(text: str) -> ast.Expr:
    return parse(f"problem p\nminimize {text}\n").statement.expr


def structure(node):
    """The node with every span and literal spelling dropped, for comparing trees."""
    if dataclasses.is_dataclass(node):
        skip = {"span", "op_span", "op_spans", "value_span", "text"}
        return (type(node).__name__,) + tuple(
            structure(getattr(node, f.name)) for f in dataclasses.fields(node) if f.name not in skip)
    if isinstance(node, tuple):
        return tuple(structure(n) for n in node)
    return node


def at(span: Span) -> tuple[int, int, int, int]:
    return (span.line, span.col, span.end_line, span.end_col)


# ---- the examples of LANGUAGE.md ---------------------------------------------------

def test_ridge():
    prog = parse(RIDGE, "ridge.opt")
    assert prog.name.id == "ridge" and at(prog.name.span) == (2, 9, 2, 14)
    n, d, X, y, lam, w = prog.decls
    assert isinstance(n, ast.DimDecl) and (n.name.id, n.value) == ("n", None)
    assert isinstance(X, ast.ParamDecl) and [e.id for e in X.shape] == ["n", "d"]
    assert at(X.span) == (5, 7, 5, 14) and X.attrs == ()
    assert y.shape[0].id == "n" and lam.shape == ()
    assert lam.attrs == (ast.SignAttr(">", 0.0, lam.attrs[0].span),)
    assert at(lam.attrs[0].span) == (6, 11, 6, 14)
    assert isinstance(w, ast.VarDecl) and w.shape[0].id == "d"
    obj = prog.statement
    assert isinstance(obj, ast.Objective) and obj.sense == "minimize" and obj.constraints == ()
    assert sexpr(obj.expr) == "(+ (* 0.5 (sumsq (- (@ X w) y))) (* (* 0.5 lam) (sumsq w)))"
    assert at(obj.span) == (9, 1, 9, 55)
    assert at(obj.expr.op_span) == (9, 33, 9, 34)
    assert prog.span.source.name == "ridge.opt" and at(prog.span) == (2, 1, 9, 55)


def test_qp():
    prog = parse(QP, "qp.opt")
    Q = prog.decls[3]
    assert Q.name.id == "Q" and [f.flag for f in Q.attrs] == ["psd"]
    assert [d.name.id for d in prog.decls] == ["n", "m", "p", "Q", "c", "G", "h", "A", "b", "z"]
    ineq, eq = prog.statement.constraints
    assert ineq.label.id == "ineq" and ineq.ops == ("<=",)
    assert [sexpr(p) for p in ineq.parts] == ["(@ G z)", "h"]
    assert at(ineq.span) == (10, 3, 10, 19) and at(ineq.op_spans[0]) == (10, 15, 10, 17)
    assert eq.label.id == "eq" and eq.ops == ("==",) and sexpr(eq.parts[1]) == "b"
    assert sexpr(prog.statement.expr) == "(+ (* 0.5 (quad z Q)) (dot c z))"


def test_sparsemax():
    prog = parse(SPARSEMAX)
    nonneg, simplex = prog.statement.constraints
    assert nonneg.label is None and (sexpr(nonneg.parts[0]), nonneg.ops) == ("x", (">=",))
    assert [sexpr(p) for p in simplex.parts] == ["(sum x)", "1"]
    assert at(simplex.parts[1].span) == (9, 13, 9, 14)


def test_lasso():
    prog = parse(LASSO)
    lam = prog.decls[-2]
    assert lam.name.id == "lam" and lam.attrs[0].op == ">=" and lam.attrs[0].bound == 0.0
    assert sexpr(prog.statement.expr).endswith("(* lam (norm1 w)))")


def test_deq():
    prog = parse(DEQ)
    fp = prog.statement
    assert isinstance(fp, ast.FixedPoint) and fp.var.id == "z" and at(fp.var.span) == (6, 13, 6, 14)
    assert sexpr(fp.expr) == "(tanh (+ (+ (@ W z) (@ U u)) bias))"


def test_kepler():
    prog = parse(KEPLER)
    M, e, E = prog.decls
    assert M.attrs == () and e.attrs == (ast.IntervalAttr(0.0, 1.0, True, False, e.attrs[0].span),)
    assert at(e.attrs[0].span) == (3, 12, 3, 21) and E.shape == ()
    assert isinstance(prog.statement, ast.Root)
    assert sexpr(prog.statement.expr) == "(- (- E (* e (sin E))) M)"


def test_options_block():
    prog = parse(LASSO + OPTIONS)
    assert [(o.key.id, o.value) for o in prog.options] == [
        ("solver", "auto"), ("tol", 1e-6), ("max_iter", 500), ("backward", "auto")]
    assert isinstance(prog.options[2].value, int)
    assert at(prog.options[0].value_span) == (8, 12, 8, 18)


# ---- declarations and statements ------------------------------------------------

def test_dims_with_values_and_attrs():
    prog = parse(textwrap.dedent("""\
        problem p
        dim a, b = 3
        param S[a, a] symmetric psd, t < -1.5, u <= 0, k in (-1, 2.5e1]
        var x[a], y[2, b]
        var s
        let r = x - 1
        maximize sum(r)
        """))
    a, b, S, t, u, k, x, y, s, r = prog.decls
    assert (a.value, b.value) == (None, 3) and at(b.span) == (2, 8, 2, 13)
    assert [f.flag for f in S.attrs] == ["symmetric", "psd"]
    assert (t.attrs[0].op, t.attrs[0].bound, u.attrs[0].op) == ("<", -1.5, "<=")
    assert k.attrs[0] == ast.IntervalAttr(-1.0, 25.0, False, True, k.attrs[0].span)
    assert isinstance(y.shape[0], ast.Number) and y.shape[0].value == 2 and s.shape == ()
    assert isinstance(r, ast.LetDecl) and sexpr(r.value) == "(- x 1)" and at(r.span) == (6, 1, 6, 14)
    assert prog.statement.sense == "maximize"


def test_chained_and_labelled_constraints():
    prog = parse("problem p\nvar x[3]\nminimize sumsq(x)\nsubject to\n  box: -1 <= x <= 1\n"
                 "  1 >= x' @ x >= 0\n")
    box, ball = prog.statement.constraints
    assert box.label.id == "box" and box.ops == ("<=", "<=")
    assert [sexpr(p) for p in box.parts] == ["(- 1)", "x", "1"]
    assert ball.ops == (">=", ">=") and sexpr(ball.parts[1]) == "(@ (' x) x)"
    assert [at(s) for s in box.op_spans] == [(5, 11, 5, 13), (5, 16, 5, 18)]


def test_constraint_on_the_subject_to_line():
    prog = parse("problem p\nvar x\nminimize x^2\nsubject to x >= 1\n  x <= 3\n")
    assert [c.ops for c in prog.statement.constraints] == [(">=",), ("<=",)]


def test_line_continuation_and_comments():
    prog = parse(textwrap.dedent("""\

        # leading comment
        problem p   # trailing comment
        dim n
        param X[n,
                n], y[n]

        # a comment-only line
        var w[n]
        minimize sumsq(X @ w
                       - y) + dot(
            w, w)
        """), "c.opt")
    assert [d.name.id for d in prog.decls] == ["n", "X", "y", "w"]
    assert sexpr(prog.statement.expr) == "(+ (sumsq (- (@ X w) y)) (dot w w))"
    assert at(prog.statement.span) == (10, 1, 12, 10)


def test_no_final_newline_and_crlf():
    prog = parse("problem p\r\nvar x\r\nroot x - 1")
    assert sexpr(prog.statement.expr) == "(- x 1)" and at(prog.statement.span) == (3, 1, 3, 11)


def test_names_that_start_with_keywords():
    prog = parse("problem problems\nparam input, subjective, into, psd2, rooted, options_\n"
                 "var variable\nminimize input * variable\n")
    assert prog.name.id == "problems"
    assert [d.name.id for d in prog.decls][:6] == ["input", "subjective", "into", "psd2", "rooted", "options_"]


# ---- expressions -------------------------------------------------------------------

@pytest.mark.parametrize("text, tree", [
    ("a + b * c", "(+ a (* b c))"),
    ("a - b - c", "(- (- a b) c)"),
    ("a * b / c @ d", "(@ (/ (* a b) c) d)"),
    ("a @ b + c", "(+ (@ a b) c)"),
    ("a ^ b ^ c", "(^ a (^ b c))"),
    ("-x^2", "(- (^ x 2))"),
    ("-x * y", "(* (- x) y)"),
    ("2^-x", "(^ 2 (- x))"),
    ("a - -b", "(- a (- b))"),
    ("+a", "(+ a)"),
    ("c' @ z", "(@ (' c) z)"),
    ("X'", "(' X)"),
    ("x''", "(' (' x))"),
    ("x'^2", "(^ (' x) 2)"),
    ("(a + b)'", "(' (+ a b))"),
    ("(a + b) * c", "(* (+ a b) c)"),
    ("transpose(X) @ y", "(@ (transpose X) y)"),
    ("sum(x, axis=0)", "(sum x axis=0)"),
    ("clip(x, -1, 1)", "(clip x (- 1) 1)"),
    ("f()", "(f )"),
    ("zeros[n] + ones[n, 3] @ eye[3]", "(+ zeros[n] (@ ones[n, 3] eye[3]))"),
    ("3 + 0.5 + 1e-3 + 2.5E+2 + .5", "(+ (+ (+ (+ 3 0.5) 1e-3) 2.5E+2) .5)"),
])
def test_precedence(text, tree):
    assert sexpr(expr_of(text)) == tree


def test_number_values_and_spans():
    e = expr_of("2.5E+2 * (x + 1)")
    assert e.lhs.value == 250.0 and e.lhs.text == "2.5E+2"
    assert at(e.span) == (2, 10, 2, 26) and at(e.rhs.span) == (2, 19, 2, 26)  # parens included
    assert at(e.op_span) == (2, 17, 2, 18)


# ---- errors: the full rendered message -------------------------------------------

H = "problem p\nvar z\n"
ERRORS = [
    (H + "minimize c' z\n", """\
t.opt:3:13: error: unexpected name 'z'; expected an operator or the end of the line
  minimize c' z
              ^
there is no implicit multiplication: write dot(c, z) or c' @ z"""),
    (H + "minimize z +", """\
t.opt:3:13: error: unexpected end of input; expected an expression
  minimize z +
              ^"""),
    (H + "minimize z $ 2\n", """\
t.opt:3:12: error: unexpected character '$'
  minimize z $ 2
             ^
names use letters, digits and '_'; operators are + - * / ^ @ and ' (transpose)"""),
    (H + "minimize sum(z\nsubject to\n  z >= 0\n", """\
t.opt:4:1: error: unexpected keyword 'subject'; expected an operator, ')', ',' or '='
  subject to
  ^^^^^^^
the '(' at 3:13 is never closed"""),
    (H + "minimize (z + 1\n", """\
t.opt:3:16: error: unexpected end of input; expected an operator or ')'
  minimize (z + 1
                 ^
the '(' at 3:10 is never closed"""),
    (H + "minimize z\nsubject to\n  sum(z) = 1\n", """\
t.opt:5:10: error: unexpected '='; expected an operator or a comparison ('<=', '>=' or '==')
    sum(z) = 1
           ^
use '==' for an equality constraint"""),
    (H + "minimize z\nsubject to\n  z = 1\n", """\
t.opt:5:5: error: '=' in a constraint
    z = 1
      ^
use '==' for an equality constraint"""),
    ("problem p\nparam var\n", """\
t.opt:2:7: error: expected a name but found the keyword 'var'
  param var
        ^^^
'var' is a reserved word and cannot be used as a name; choose another name"""),
    ("var z\nproblem p\n", """\
t.opt:1:1: error: the file must start with 'problem NAME'
  var z
  ^^^
found 'var' first; add a line 'problem NAME' above it"""),
    ("# nothing here\n", """\
t.opt:1:1: error: empty file: expected 'problem NAME'
  # nothing here
  ^
a .opt file starts with 'problem NAME', then declarations, then one of 'minimize', 'maximize', \
'root' or 'fixed_point'"""),
    ("problem p\nproblem q\n", """\
t.opt:2:1: error: a second 'problem' line
  problem q
  ^^^^^^^
the problem is already named 'p' on line 1; a file describes one problem"""),
    (H + "minimize z\nmaximize z\n", """\
t.opt:4:1: error: a second problem statement
  maximize z
  ^^^^^^^^
a file has exactly one of 'minimize', 'maximize', 'root' or 'fixed_point'; the first is \
'minimize' on line 3"""),
    (H + "root z\n", None),  # sanity: a valid file among the bad ones
    (H, """\
t.opt:2:6: error: no problem statement
  var z
       ^
add one of 'minimize EXPR', 'maximize EXPR', 'root EXPR' or 'fixed_point VAR = EXPR' after the \
declarations"""),
    (H + "minimize z\nvar y\n", """\
t.opt:4:1: error: 'var' declaration after the problem statement
  var y
  ^^^
declarations come before 'minimize' (line 3); move this line above it"""),
    (H + "root z\nsubject to\n  z >= 0\n", """\
t.opt:4:1: error: 'subject to' after 'root'
  subject to
  ^^^^^^^^^^
only 'minimize' and 'maximize' take constraints"""),
    (H + "minimize z\nz >= 0\n", """\
t.opt:4:1: error: a constraint outside 'subject to'
  z >= 0
  ^^^^^^
add a line 'subject to' after 'minimize' (line 3)"""),
    (H + "minimize z\nsubject to\n", """\
t.opt:4:1: error: 'subject to' with no constraints
  subject to
  ^^^^^^^^^^
write one constraint a line below it, or remove it"""),
    (H + "minimize z\noptions\n  tol = 1\nvar q\n", """\
t.opt:6:1: error: 'var' after the options block
  var q
  ^^^
the 'options' block (line 4) must come last; move this line above it"""),
    (H + "minimize z\noptions\n  tol = 1\noptions\n", """\
t.opt:6:1: error: a second 'options' block
  options
  ^^^^^^^
put every option under the first 'options' (line 4)"""),
    (H + "minimize z\nsubject to\n  0 <= z >= 1\n", """\
t.opt:5:10: error: cannot chain '<=' with '>='
    0 <= z >= 1
           ^^
a chained constraint is 'lo <= x <= hi' or 'hi >= x >= lo'; write other combinations as two \
constraints"""),
    (H + "minimize z\nsubject to\n  z < 1\n", """\
t.opt:5:5: error: unexpected '<'; expected an operator, a comparison ('<=', '>=' or '=='), ':' or '='
    z < 1
      ^
strict inequalities are not supported; use '<=' or '>='"""),
    (H + "minimize z\nsubject to\n  z != 1\n", """\
t.opt:5:5: error: unexpected '!='
    z != 1
      ^^
'!=' is not a constraint; constraints use '<=', '>=' or '=='"""),
    (H + "minimize z ** 2\n", """\
t.opt:3:13: error: unexpected '*'; expected an expression
  minimize z ** 2
              ^
use '^' for powers: x^2"""),
    (H + "minimise z\n", """\
t.opt:3:10: error: unexpected name 'z'; expected an operator, a comparison ('<=', '>=' or '=='), ':' or '='
  minimise z
           ^
'minimise' is not a keyword; did you mean 'minimize'?"""),
    (H + "minimize z\n  + 1\n", """\
t.opt:4:6: error: unexpected end of input; expected a comparison ('<=', '>=' or '==')
    + 1
       ^
a line that starts with an operator does not continue the previous one; wrap a long expression \
in parentheses to break it across lines"""),
    (H + "minimize z subject to z >= 0\n", """\
t.opt:3:12: error: unexpected keyword 'subject'; expected an operator or the end of the line
  minimize z subject to z >= 0
             ^^^^^^^
put 'subject to' on its own line after the objective"""),
    ("problem p\nparam X[n] y\n", """\
t.opt:2:12: error: unknown attribute 'y'
  param X[n] y
             ^
expected '> 0', '>= 0', '< 0', '<= 0', 'in [lo, hi]', 'psd' or 'symmetric'; separate \
declarations with commas: 'param a, b'"""),
    ("problem p\nvar x >= 0\n", """\
t.opt:2:7: error: unexpected '>='; expected ',', '[' or the end of the line
  var x >= 0
        ^^
a var takes no attributes; put bounds on it under 'subject to'"""),
    ("problem p\ndim n = 2.5\n", """\
t.opt:2:9: error: bad size '2.5' for dim 'n'
  dim n = 2.5
          ^^^
a dim's size is a positive whole number, e.g. 'dim n = 3'"""),
    ("problem p\nparam X[n, 2.5]\n", """\
t.opt:2:12: error: bad shape entry '2.5'
  param X[n, 2.5]
             ^^^
a shape lists dim names or whole numbers, e.g. [n, 3]"""),
    ("problem p\nparam e in [0, 1\n", """\
t.opt:2:17: error: unexpected end of input; expected ')' or ']'
  param e in [0, 1
                  ^
the '[' at 2:12 is never closed"""),
    (H + "minimize X[1]\n", """\
t.opt:3:10: error: 'X[...]' is not an array literal
  minimize X[1]
           ^^^^
only zeros[shape], ones[shape] and eye[n] take brackets; indexing is not supported"""),
    (H + "minimize sum(axis=0, z)\n", """\
t.opt:3:22: error: positional argument after a keyword argument
  minimize sum(axis=0, z)
                       ^
put keyword arguments such as 'axis=...' last"""),
    (H + "minimize z\noptions\n  solver = 'newton'\n", """\
t.opt:5:12: error: unexpected "'"; expected an expression or a string
    solver = 'newton'
             ^
strings use double quotes, e.g. "newton\""""),
    (H + "minimize z\noptions\n  solver = \"newton\n", """\
t.opt:5:12: error: unterminated string
    solver = "newton
             ^
close the string with '"' on the same line"""),
    (H + "minimize z\noptions\n  tol = z + 1\n", """\
t.opt:5:9: error: an option's value must be a number or a string
    tol = z + 1
          ^^^^^
e.g. tol = 1e-8, max_iter = 500, solver = "newton\""""),
    (H + "r = z + 1\nminimize r\n", """\
t.opt:3:1: error: 'r = ...' outside the options block
  r = z + 1
  ^^^^^^^^^
to name an expression write 'let r = ...'; options go last, under a line 'options'"""),
    (H + "let to = 3\n", """\
t.opt:3:5: error: expected a name but found the keyword 'to'
  let to = 3
      ^^
'to' is a reserved word and cannot be used as a name; choose another name"""),
    (H + "minimize z)\n", """\
t.opt:3:11: error: unexpected ')'; expected the end of the line
  minimize z)
            ^"""),
    (H + "minimize z;\n", """\
t.opt:3:11: error: unexpected character ';'
  minimize z;
            ^
a statement ends at the end of its line; remove the ';'"""),
    (H + "minimize z.T @ z\n", """\
t.opt:3:11: error: unexpected character '.'
  minimize z.T @ z
            ^
'.' appears only in numbers such as 0.5; names have no attributes (transpose with x' or \
transpose(x))"""),
    (H + "minimize z @  # dangling\n\n", """\
t.opt:3:13: error: unexpected end of input; expected an expression
  minimize z @  # dangling
              ^"""),
    (H + "minimize\nsubject to\n", """\
t.opt:3:9: error: unexpected end of line; expected an expression
  minimize
          ^"""),
]


@pytest.mark.parametrize("text, message", ERRORS)
def test_error_messages(text, message):
    if message is None:
        parse(text, "t.opt")
        return
    with pytest.raises(OptError) as info:
        parse(text, "t.opt")
    assert str(info.value) == message
    assert info.value.render() == message


def test_errors_are_plain_opterrors():
    # An error raised inside the Lark transformer arrives unwrapped, with no
    # Lark exception chained to it.
    with pytest.raises(OptError) as info:
        parse("problem p\nparam X[n] foo\n")
    assert type(info.value) is OptError
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(OptError) as info:
        parse("problem p\nminimize $\n")
    assert info.value.__cause__ is None and info.value.__suppress_context__


# ---- round trip: print a random expression, parse it back --------------------------

_SPAN = Span(1, 1, 1, 1)
# Binding strength of each printed form, loosest first; an operand whose form is
# looser than its slot needs is printed in parentheses.
_LEVEL = {"+": 1, "-": 1, "*": 2, "/": 2, "@": 2, "^": 4}
_SLOTS = {"+": (1, 2), "-": (1, 2), "*": (2, 3), "/": (2, 3), "@": (2, 3), "^": (5, 3)}


def level(e) -> int:
    if isinstance(e, ast.BinaryOp):
        return _LEVEL[e.op]
    return {ast.UnaryOp: 3, ast.Transpose: 5}.get(type(e), 6)


def show(e, need: int = 0) -> str:
    """Print `e` with as few parentheses as its slot (of binding strength `need`) allows."""
    if isinstance(e, ast.BinaryOp):
        lo, hi = _SLOTS[e.op]
        text = f"{show(e.lhs, lo)} {e.op} {show(e.rhs, hi)}"
    elif isinstance(e, ast.UnaryOp):
        text = e.op + show(e.operand, 3)
    elif isinstance(e, ast.Transpose):
        text = show(e.operand, 5) + "'"
    elif isinstance(e, ast.Call):
        args = [show(a) for a in e.args] + [f"{k.name.id}={show(k.value)}" for k in e.kwargs]
        text = f"{e.func.id}({', '.join(args)})"
    elif isinstance(e, ast.ArrayLiteral):
        text = f"{e.kind}[{', '.join(getattr(s, 'id', None) or s.text for s in e.shape)}]"
    else:
        text = getattr(e, "id", None) or e.text
    return f"({text})" if level(e) < need else text


_names = st.sampled_from(["x", "y", "W", "b_1", "input", "subjective"])
_leaves = st.one_of(
    _names.map(lambda n: ast.NameRef(n, _SPAN)),
    st.sampled_from(["0", "3", "0.5", "1e-3", "2.5E+2", ".5"]).map(
        lambda t: ast.Number(float(t), t, _SPAN)),
    st.tuples(st.sampled_from(["zeros", "ones", "eye"]),
              st.lists(st.sampled_from(["n", "3"]), min_size=1, max_size=2)).map(
        lambda k: ast.ArrayLiteral(k[0], tuple(
            ast.Number(3.0, s, _SPAN) if s == "3" else ast.Name(s, _SPAN) for s in k[1]), _SPAN)),
)


def _grow(children):
    binary = st.builds(lambda op, a, b: ast.BinaryOp(op, a, b, _SPAN, _SPAN),
                       st.sampled_from(list(_LEVEL)), children, children)
    unary = st.builds(lambda op, a: ast.UnaryOp(op, a, _SPAN), st.sampled_from(["-", "+"]), children)
    transpose = st.builds(lambda a: ast.Transpose(a, _SPAN), children)
    call = st.builds(
        lambda f, args, kw: ast.Call(ast.Name(f, _SPAN), tuple(args), tuple(
            ast.Keyword(ast.Name("axis", _SPAN), v, _SPAN) for v in kw), _SPAN),
        st.sampled_from(["sum", "dot", "clip"]), st.lists(children, max_size=3),
        st.lists(children, max_size=1))
    return st.one_of(binary, unary, transpose, call)


expressions = st.recursive(_leaves, _grow, max_leaves=12)


@settings(deadline=None)
@given(expressions)
def test_print_parse_round_trip(e):
    assert structure(expr_of(show(e))) == structure(e)
