"""Compile-time errors past the parser: names, calls, shapes, declarations, options, supportedness.

Every bad input is checked against its full rendered message (STYLE.md, "Errors"):
`t.opt:LINE:COL: error: WHAT`, the source line, a caret under the offending part,
then what was found and expected and what to do. Pure syntax errors live in
tests/test_syntax.py. Messages that a review found poor are pinned at their improved wording.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import optlang
from optlang import NotSupportedError, OptError

# Line 5 is the statement. n and m are both bound by params, so shape errors are reached.
V = "problem p\ndim n, m\nparam y[n], z[m], A[m, n], s, lam\nvar w[n]\n"
# A valid smooth problem; an options block starts at line 6.
S = "problem p\ndim n\nparam y[n]\nvar w[n]\nminimize sumsq(w - y)\n"
# kepler.opt of LANGUAGE.md: a valid root problem; an options block starts at line 5.
K = "problem kepler\nparam M, e in [0, 1)\nvar E\nroot E - e * sin(E) - M\n"
# Like V with signed params (mu >= 0, r > 0) for prox terms and balls; line 5 is the statement.
P = "problem p\ndim n, m\nparam y[n], z[m], A[m, n], lam, mu >= 0, r > 0\nvar w[n]\n"
# P with a smooth objective and `subject to`: constraints start at line 7.
C = P + "minimize sumsq(w - y)\nsubject to\n"
# P with the prox term mu * norm1(w) and `subject to`: constraints start at line 7.
Q = P + "minimize sumsq(w - y) + mu * norm1(w)\nsubject to\n"
# A fixed-point header (line 5 is the statement) and a matrix-var header.
D = "problem deq\ndim d\nparam W[d, d], bias[d]\nvar z[d]\n"
E = "problem p\ndim n, k\nparam Y[n, k], mu >= 0\nvar X[n, k]\n"


def error_of(src: str) -> OptError:
    """The OptError that compiling `src` raises (any other exception fails the test)."""
    with pytest.raises(OptError) as info:
        optlang.compile_string(src, name="t.opt")
    return info.value


# ---- messages pinned as they are -------------------------------------------------------

OPT_ERRORS = [
    ('unknown-name-suggests', V + "minimize sumsq(w - yy)\n", """\
t.opt:5:20: error: unknown name 'yy'
  minimize sumsq(w - yy)
                     ^^
declare it with dim, param, var or let; did you mean 'y'?"""),
    ('unknown-name-suggests-param', V + "minimize sumsq(w - y) + lamb * sumsq(w)\n", """\
t.opt:5:25: error: unknown name 'lamb'
  minimize sumsq(w - y) + lamb * sumsq(w)
                          ^^^^
declare it with dim, param, var or let; did you mean 'lam'?"""),
    ('unknown-name-no-suggestion', V + "minimize sumsq(w - q)\n", """\
t.opt:5:20: error: unknown name 'q'
  minimize sumsq(w - q)
                     ^
declare it with dim, param, var or let"""),
    ('unknown-function-suggests', V + "minimize sumsqr(w - y)\n", """\
t.opt:5:10: error: unknown function 'sumsqr'
  minimize sumsqr(w - y)
           ^^^^^^
did you mean 'sumsq'?"""),
    ('unknown-function-norm', V + "minimize norm(w - y)\n", """\
t.opt:5:10: error: unknown function 'norm'
  minimize norm(w - y)
           ^^^^
did you mean 'norm2'?"""),
    ('unknown-function-no-suggestion', V + "minimize foo(w - y)\n", """\
t.opt:5:10: error: unknown function 'foo'
  minimize foo(w - y)
           ^^^
see LANGUAGE.md for the functions"""),
    ('param-called-as-function', V + "minimize y(w)\n", """\
t.opt:5:10: error: unknown function 'y'
  minimize y(w)
           ^
'y' is a param, not a function; there is no implicit multiplication, write '*' or '@'"""),
    ('sumsq-two-args', V + "minimize sumsq(w, y)\n", """\
t.opt:5:10: error: sumsq takes 1 argument, found 2
  minimize sumsq(w, y)
           ^^^^^^^^^^^
write sumsq(x)"""),
    ('dot-one-arg', V + "minimize dot(w)\n", """\
t.opt:5:10: error: dot takes 2 arguments, found 1
  minimize dot(w)
           ^^^^^^
write dot(x, y)"""),
    ('clip-two-args', V + "minimize sumsq(clip(w, 0))\n", """\
t.opt:5:16: error: clip takes 3 arguments, found 2
  minimize sumsq(clip(w, 0))
                 ^^^^^^^^^^
write clip(x, y, z)"""),
    ('transpose-two-args', V + "minimize sumsq(transpose(w, y))\n", """\
t.opt:5:16: error: transpose takes 1 argument, found 2
  minimize sumsq(transpose(w, y))
                 ^^^^^^^^^^^^^^^
write transpose(x)"""),
    ('axis-on-elementwise', V + "minimize sum(exp(w, axis=0))\n", """\
t.opt:5:21: error: unexpected keyword 'axis' in exp
  minimize sum(exp(w, axis=0))
                      ^^^^^^
exp takes no keywords"""),
    ('unknown-keyword', V + "minimize sum(w, axes=0)\n", """\
t.opt:5:17: error: unexpected keyword 'axes' in sum
  minimize sum(w, axes=0)
                  ^^^^^^
the only keyword is axis=k"""),
    ('axis-out-of-range-vector', V + "minimize sum(w, axis=1)\n", """\
t.opt:5:22: error: axis=1 is out of range for [n]
  minimize sum(w, axis=1)
                       ^
sum here takes axis 0 to 0"""),
    ('axis-out-of-range-matrix', V + "minimize sumsq(w) + sum(A, axis=2)\n", """\
t.opt:5:33: error: axis=2 is out of range for [m, n]
  minimize sumsq(w) + sum(A, axis=2)
                                  ^
sum here takes axis 0 to 1"""),
    ('axis-on-scalar', V + "minimize sumsq(w) + sum(s, axis=0)\n", """\
t.opt:5:33: error: axis=0 is out of range for scalar
  minimize sumsq(w) + sum(s, axis=0)
                                  ^
the argument is a scalar; drop the axis"""),
    ('axis-not-integer', V + "minimize sum(w, axis=0.5)\n", """\
t.opt:5:22: error: axis must be a nonnegative integer literal
  minimize sum(w, axis=0.5)
                       ^^^
axes count from 0 over the declared shape"""),
    ('axis-negative', V + "minimize sum(w, axis=-1)\n", """\
t.opt:5:22: error: axis must be a nonnegative integer literal
  minimize sum(w, axis=-1)
                       ^^
axes count from 0 over the declared shape"""),
    ('axis-a-name', V + "minimize sum(w, axis=n)\n", """\
t.opt:5:22: error: axis must be a nonnegative integer literal
  minimize sum(w, axis=n)
                       ^
axes count from 0 over the declared shape"""),
    ('axis-an-expression', V + "minimize sum(w, axis=0+0)\n", """\
t.opt:5:22: error: axis must be a nonnegative integer literal
  minimize sum(w, axis=0+0)
                       ^^^
axes count from 0 over the declared shape"""),
    ('dot-axis-out-of-range', V + "minimize dot(w, y, axis=1)\n", """\
t.opt:5:25: error: axis=1 is out of range for [n]
  minimize dot(w, y, axis=1)
                          ^
axes count from 0"""),
    ('add-mismatch', V + "minimize sumsq(w + z)\n", """\
t.opt:5:16: error: '+' needs shapes that broadcast
  minimize sumsq(w + z)
                 ^^^^^
the left side is [n] but the right side is [m]; elementwise operations follow NumPy broadcasting (trailing dims equal, or 1)"""),
    ('mul-mismatch', V + "minimize sum(w * z)\n", """\
t.opt:5:14: error: '*' needs shapes that broadcast
  minimize sum(w * z)
               ^^^^^
the left side is [n] but the right side is [m]; elementwise operations follow NumPy broadcasting (trailing dims equal, or 1)"""),
    ('sub-transposed-mismatch', V + "minimize sumsq(w) + sum(A - A')\n", """\
t.opt:5:25: error: '-' needs shapes that broadcast
  minimize sumsq(w) + sum(A - A')
                          ^^^^^^
the left side is [m, n] but the right side is [n, m]; elementwise operations follow NumPy broadcasting (trailing dims equal, or 1)"""),
    ('matmul-inner-dims', V + "minimize sumsq(A @ z)\n", """\
t.opt:5:16: error: '@' needs matching inner dims
  minimize sumsq(A @ z)
                 ^^^^^
the left side is [m, n] but the right side is [m]; expected the right side to be [n]"""),
    ('matmul-vector-matrix', V + "minimize sumsq(w @ A)\n", """\
t.opt:5:16: error: '@' needs matching inner dims
  minimize sumsq(w @ A)
                 ^^^^^
the left side is [n] but the right side is [m, n]; expected the right side to be [n, n]"""),
    ('matmul-scalar-left', V + "minimize sumsq(s @ w)\n", """\
t.opt:5:16: error: '@' needs vectors or matrices
  minimize sumsq(s @ w)
                 ^^^^^
the left side is scalar; use '*' to scale by a scalar"""),
    ('matmul-scalar-right', V + "minimize sumsq(w @ 2)\n", """\
t.opt:5:16: error: '@' needs vectors or matrices
  minimize sumsq(w @ 2)
                 ^^^^^
the right side is scalar; use '*' to scale by a scalar"""),
    ('dot-mismatch', V + "minimize dot(w, z)\n", """\
t.opt:5:10: error: dot needs two arrays of the same shape
  minimize dot(w, z)
           ^^^^^^^^^
found [n] and [m]"""),
    ('maximum-mismatch', V + "minimize sumsq(w) + sum(maximum(w, z))\n", """\
t.opt:5:25: error: the arguments of maximum do not broadcast
  minimize sumsq(w) + sum(maximum(w, z))
                          ^^^^^^^^^^^^^
found [n] and [m]"""),
    ('clip-mismatch', V + "minimize sumsq(w) + sum(clip(w, z, 1))\n", """\
t.opt:5:25: error: the arguments of clip do not broadcast
  minimize sumsq(w) + sum(clip(w, z, 1))
                          ^^^^^^^^^^^^^
found [n] and [m] and scalar"""),
    ('quad-vector-Q', V + "minimize quad(w, y)\n", """\
t.opt:5:10: error: quad(x, Q) needs a vector x[n] and a matrix Q[n, n]
  minimize quad(w, y)
           ^^^^^^^^^^
found x [n] and Q [n]"""),
    ('quad-mismatched-Q', V + "minimize quad(w, A)\n", """\
t.opt:5:10: error: quad(x, Q) needs a vector x[n] and a matrix Q[n, n]
  minimize quad(w, A)
           ^^^^^^^^^^
found x [n] and Q [m, n]"""),
    ('quad-swapped', V + "minimize quad(A, w)\n", """\
t.opt:5:10: error: quad(x, Q) needs a vector x[n] and a matrix Q[n, n]
  minimize quad(A, w)
           ^^^^^^^^^^
found x [m, n] and Q [n]"""),
    ('transpose-of-vector', V + "minimize sumsq(transpose(w) - y)\n", """\
t.opt:5:16: error: transpose needs a matrix
  minimize sumsq(transpose(w) - y)
                 ^^^^^^^^^^^^
the argument is [n]; a vector is its own transpose"""),
    ('eye-two-dims', V + "minimize sumsq(eye[m, n] @ w - y)\n", """\
t.opt:5:16: error: eye takes one dim, found 2
  minimize sumsq(eye[m, n] @ w - y)
                 ^^^^^^^^^
write eye[n] for the n-by-n identity"""),
    ('eye-zero', V + "minimize sumsq(w) + sum(eye[0])\n", """\
t.opt:5:29: error: a shape entry must be a dim or a positive integer, found '0'
  minimize sumsq(w) + sum(eye[0])
                              ^
in the shape of 'eye'"""),
    ('objective-not-scalar', V + "minimize w - y\n", """\
t.opt:5:10: error: the objective of minimize must be a scalar
  minimize w - y
           ^^^^^
found [n]; reduce it, e.g. with sum(...) or sumsq(...)"""),
    ('maximize-let-not-scalar', V + "let r = w - y\nmaximize r\n", """\
t.opt:6:10: error: the objective of maximize must be a scalar
  maximize r
           ^
found [n]; reduce it, e.g. with sum(...) or sumsq(...)"""),
    ('objective-without-var', V + "minimize sumsq(y)\n", """\
t.opt:5:10: error: the minimize expression does not involve any var
  minimize sumsq(y)
           ^^^^^^^^
it must depend on the declared var(s): w"""),
    ('root-scalar-for-vector-var', V + "root sum(w - y)\n", """\
t.opt:5:6: error: root needs an expression with the shape of the var
  root sum(w - y)
       ^^^^^^^^^^
the var 'w' is [n] but the expression is scalar"""),
    ('root-vector-for-scalar-var', "problem p\nparam v[3]\nvar E\nroot E - v\n", """\
t.opt:4:6: error: root needs an expression with the shape of the var
  root E - v
       ^^^^^
the var 'E' is scalar but the expression is [3]"""),
    ('root-without-var', "problem p\nvar E\nroot 3\n", """\
t.opt:3:6: error: the root expression does not involve any var
  root 3
       ^
it must depend on the declared var(s): E"""),
    ('fixed-point-on-param', "problem p\ndim n\nparam W[n, n], q[n]\nvar z[n]\nfixed_point q = tanh(W @ z)\n", """\
t.opt:5:13: error: fixed_point needs a var on the left, found a param 'q'
  fixed_point q = tanh(W @ z)
              ^
write `fixed_point z = EXPR` with z declared by `var`"""),
    ('fixed-point-unknown-suggests', "problem p\ndim n\nparam W[n, n]\nvar z[n]\nfixed_point zz = tanh(W @ z)\n", """\
t.opt:5:13: error: fixed_point needs a var on the left, found an unknown name 'zz'
  fixed_point zz = tanh(W @ z)
              ^^
write `fixed_point z = EXPR` with z declared by `var`; did you mean 'z'?"""),
    ('fixed-point-on-let', "problem p\nvar w\nlet w2 = w^2\nfixed_point w2 = cos(w)\n", """\
t.opt:4:13: error: fixed_point needs a var on the left, found a let 'w2'
  fixed_point w2 = cos(w)
              ^^
write `fixed_point z = EXPR` with z declared by `var`; did you mean 'w'?"""),
    ('fixed-point-map-shape', "problem p\ndim n\nparam W[n, n]\nvar z[n]\nfixed_point z = sum(tanh(W @ z))\n", """\
t.opt:5:17: error: the map of a fixed point must have the shape of its var
  fixed_point z = sum(tanh(W @ z))
                  ^^^^^^^^^^^^^^^^
'z' is [n] but the right side is scalar"""),
    ('no-var', "problem p\ndim n\nparam y[n]\nminimize sumsq(y)\n", """\
t.opt:4:1: error: the problem declares no var
  minimize sumsq(y)
  ^^^^^^^^^^^^^^^^^
declare what to solve for with `var NAME[shape]`"""),
    ('no-var-fixed-point', "problem p\nparam q\nfixed_point q = q\n", """\
t.opt:3:1: error: the problem declares no var
  fixed_point q = q
  ^^^^^^^^^^^^^^^^^
declare what to solve for with `var NAME[shape]`"""),
    ('param-sizes-var', "problem p\ndim n\nparam W[n, n], k\nvar z[k]\nminimize sumsq(z)\n", """\
t.opt:4:7: error: 'k' is a param; a shape entry must be a dim or an integer
  var z[k]
        ^
only dims (declared with `dim`) can size 'z'"""),
    ('var-sizes-var', "problem p\ndim n\nparam W[n, n]\nvar z[n]\nvar u[z]\nminimize sumsq(z)\n", """\
t.opt:5:7: error: 'z' is a var; a shape entry must be a dim or an integer
  var u[z]
        ^
only dims (declared with `dim`) can size 'u'"""),
    ('param-sizes-zeros', V + "minimize sumsq(w) + sum(zeros[A])\n", """\
t.opt:5:31: error: 'A' is a param; a shape entry must be a dim or an integer
  minimize sumsq(w) + sum(zeros[A])
                                ^
only dims (declared with `dim`) can size 'zeros'"""),
    ('undeclared-dim', "problem p\ndim n\nparam y[n]\nvar w[k]\nminimize sumsq(w)\n", """\
t.opt:4:7: error: 'k' is not declared; a shape entry must be a dim or an integer
  var w[k]
        ^
declare it with `dim k` before 'w'"""),
    ('zero-shape-entry', "problem p\nvar w[0]\nminimize sumsq(w)\n", """\
t.opt:2:7: error: a shape entry must be a dim or a positive integer, found '0'
  var w[0]
        ^
in the shape of 'w'"""),
    ('dim-unbound', "problem p\ndim n, m\nparam y[m]\nvar w[n]\nminimize sumsq(w)\n", """\
t.opt:4:7: error: dim 'n' sizes the var 'w' but no param has it in its shape
  var w[n]
        ^
give it a value (`dim n = 3`) or use it in a param's shape so calls can bind it"""),
    ('dup-dim-param', "problem p\ndim n\nparam y[n]\nparam n\nvar w[n]\nminimize sumsq(w)\n", """\
t.opt:4:7: error: 'n' is already declared
  param n
        ^
it was declared as a dim at line 2, column 5; every dim, param, var and let needs a name of its own"""),
    ('dup-param-var', "problem p\ndim n\nparam y[n]\nvar w[n]\nvar y\nminimize sumsq(w)\n", """\
t.opt:5:5: error: 'y' is already declared
  var y
      ^
it was declared as a param at line 3, column 7; every dim, param, var and let needs a name of its own"""),
    ('dup-var-let', "problem p\ndim n\nparam y[n]\nvar w[n]\nlet w = y + 1\nminimize sumsq(w)\n", """\
t.opt:5:5: error: 'w' is already declared
  let w = y + 1
      ^
it was declared as a var at line 4, column 5; every dim, param, var and let needs a name of its own"""),
    ('dup-param-let', "problem p\ndim n\nparam y[n]\nvar w[n]\nlet y = w + 1\nminimize sumsq(y)\n", """\
t.opt:5:5: error: 'y' is already declared
  let y = w + 1
      ^
it was declared as a param at line 3, column 7; every dim, param, var and let needs a name of its own"""),
    ('dup-dim-dim', "problem p\ndim n, n\nparam y[n]\nvar w[n]\nminimize sumsq(w)\n", """\
t.opt:2:8: error: 'n' is already declared
  dim n, n
         ^
it was declared as a dim at line 2, column 5; every dim, param, var and let needs a name of its own"""),
    ('dup-param-param', "problem p\ndim n\nparam y[n], y[n]\nvar w[n]\nminimize sumsq(w)\n", """\
t.opt:3:13: error: 'y' is already declared
  param y[n], y[n]
              ^
it was declared as a param at line 3, column 7; every dim, param, var and let needs a name of its own"""),
    ('psd-on-vector', "problem p\ndim n\nparam A[n] psd, y[n]\nvar w[n]\nminimize sumsq(w - y)\n", """\
t.opt:3:12: error: 'psd' needs a square matrix
  param A[n] psd, y[n]
             ^^^
'A' is declared [n]; declare it square, e.g. [n, n]"""),
    ('symmetric-not-square', "problem p\ndim m, n\nparam A[n, m] symmetric, y[n]\nvar w[n]\nminimize sumsq(w - y)\n", """\
t.opt:3:15: error: 'symmetric' needs a square matrix
  param A[n, m] symmetric, y[n]
                ^^^^^^^^^
'A' is declared [n, m]; declare it square, e.g. [n, n]"""),
    ('psd-twice', "problem p\ndim n\nparam y[n], S[n, n] psd psd\nvar w[n]\nminimize sumsq(w - y)\n", """\
t.opt:3:25: error: 'S' has two psd attributes
  param y[n], S[n, n] psd psd
                          ^^^
drop the repeat"""),
    ('empty-interval', "problem p\ndim n\nparam y[n], a in [1, 0]\nvar w[n]\nminimize sumsq(w - y)\n", """\
t.opt:3:15: error: the interval of 'a' is empty
  param y[n], a in [1, 0]
                ^^^^^^^^^
expected lo < hi, found lo = 1 and hi = 0"""),
    ('point-interval', "problem p\ndim n\nparam y[n], a in [1, 1]\nvar w[n]\nminimize sumsq(w - y)\n", """\
t.opt:3:15: error: the interval of 'a' is empty
  param y[n], a in [1, 1]
                ^^^^^^^^^
expected lo < hi, found lo = 1 and hi = 1"""),
    ('two-signs', "problem p\ndim n\nparam y[n], a > 0 < 1\nvar w[n]\nminimize sumsq(w - y)\n", """\
t.opt:3:19: error: 'a' has two range attributes
  param y[n], a > 0 < 1
                    ^^^
give each parameter at most one sign or interval attribute"""),
    ('sign-and-interval', "problem p\ndim n\nparam y[n], a > 0 in [0, 1]\nvar w[n]\nminimize sumsq(w - y)\n", """\
t.opt:3:19: error: 'a' has two range attributes
  param y[n], a > 0 in [0, 1]
                    ^^^^^^^^^
give each parameter at most one sign or interval attribute"""),
    ('unknown-option', S + "options\n  foo = 1\n", """\
t.opt:7:3: error: unknown option 'foo'
    foo = 1
    ^^^
the options are backward, max_iter, solver, time_limit, tol"""),
    ('unknown-option-tolerance', S + "options\n  tolerance = 1e-6\n", """\
t.opt:7:3: error: unknown option 'tolerance'
    tolerance = 1e-6
    ^^^^^^^^^
the options are backward, max_iter, solver, time_limit, tol"""),
    ('repeated-option', S + "options\n  tol = 1e-6\n  max_iter = 10\n  tol = 1e-8\n", """\
t.opt:9:3: error: option 'tol' is set twice
    tol = 1e-8
    ^^^
keep one"""),
    ('bad-solver', S + "options\n  solver = \"foo\"\n", """\
t.opt:7:12: error: option solver must be one of "auto", "newton", "pgd", "fista", "ipm", "admm", "anderson"
    solver = "foo"
             ^^^^^
found 'foo'"""),
    ('bad-backward', S + "options\n  backward = \"sideways\"\n", """\
t.opt:7:14: error: option backward must be one of "auto", "direct", "cg", "gmres", "neumann", "unroll"
    backward = "sideways"
               ^^^^^^^^^^
found 'sideways'"""),
    ('solver-a-number', S + "options\n  solver = 1\n", """\
t.opt:7:12: error: option solver must be one of "auto", "newton", "pgd", "fista", "ipm", "admm", "anderson"
    solver = 1
             ^
found 1"""),
    ('tol-negative', S + "options\n  tol = -1\n", """\
t.opt:7:9: error: option tol must be a finite positive number
    tol = -1
          ^^
found -1"""),
    ('tol-zero', S + "options\n  tol = 0\n", """\
t.opt:7:9: error: option tol must be a finite positive number
    tol = 0
          ^
found 0"""),
    ('tol-underflows', S + "options\n  tol = 1e-400\n", """\
t.opt:7:9: error: option tol must be a finite positive number
    tol = 1e-400
          ^^^^^^
found 0.0"""),
    ('tol-infinite', S + "options\n  tol = 1e400\n", """\
t.opt:7:9: error: the number 1e400 is too large: it overflows float64 (to inf)
    tol = 1e400
          ^^^^^
numbers must have a magnitude below 1.8e308"""),
    ("literal-overflows", S.replace("minimize sumsq(w - y)", "minimize 1e400 * sumsq(w - y)"), """\
t.opt:5:10: error: the number 1e400 is too large: it overflows float64 (to inf)
  minimize 1e400 * sumsq(w - y)
           ^^^^^
numbers must have a magnitude below 1.8e308"""),
    ('tol-a-string', S + "options\n  tol = \"small\"\n", """\
t.opt:7:9: error: option tol must be a number
    tol = "small"
          ^^^^^^^
found 'small'"""),
    ('max-iter-fraction', S + "options\n  max_iter = 0.5\n", """\
t.opt:7:14: error: option max_iter must be a positive integer
    max_iter = 0.5
               ^^^
found 0.5"""),
    ('max-iter-zero', S + "options\n  max_iter = 0\n", """\
t.opt:7:14: error: option max_iter must be a positive integer
    max_iter = 0
               ^
found 0"""),
    ('max-iter-a-string', S + "options\n  max_iter = \"500\"\n", """\
t.opt:7:14: error: option max_iter must be a number
    max_iter = "500"
               ^^^^^
found '500'"""),
    ('constraint-without-var', V + "minimize sumsq(w - y)\nsubject to\n  sum(y) >= 0\n", """\
t.opt:7:3: error: this constraint does not involve any var
    sum(y) >= 0
    ^^^^^^^^^^^
constraints restrict vars; check the names"""),
    ('constraint-sides-mismatch', V + "minimize sumsq(w - y)\nsubject to\n  w >= z\n", """\
t.opt:7:3: error: the sides of '>=' do not broadcast
    w >= z
    ^^^^^^
the left side is [n] but the right side is [m]"""),
    # labels name duals: one per constraint line, unique, not a declared name
    ('label-used-twice', C + "  c: w >= 0\n  c: sum(w) <= 1\n", """\
t.opt:8:3: error: the label 'c' is used twice
    c: sum(w) <= 1
    ^
it already labels the constraint on line 7; give each dual its own label"""),
    ('label-is-a-var', C + "  w: w >= 0\n", """\
t.opt:7:3: error: the label 'w' is also the name of a var
    w: w >= 0
    ^
duals are returned under their labels; pick a name not used in the file"""),
    ('label-is-a-param', C + "  y: w >= y\n", """\
t.opt:7:3: error: the label 'y' is also the name of a param
    y: w >= y
    ^
duals are returned under their labels; pick a name not used in the file"""),
    ('label-is-a-dim', C + "  n: sum(w) == 1\n", """\
t.opt:7:3: error: the label 'n' is also the name of a dim
    n: sum(w) == 1
    ^
duals are returned under their labels; pick a name not used in the file"""),
    ('labelled-chain', C + "  box: 0 <= w <= 1\n", """\
t.opt:7:3: error: a chained constraint cannot carry a label
    box: 0 <= w <= 1
    ^^^
its two sides have two duals: write it as two constraints, each with its own label"""),
]

# The catalogue of what this version rejects: every construct the language accepts but the compiler
# cannot solve yet raises NotSupportedError at compile time, with the message pinned here (a few more,
# whose wording was once poor, are pinned in POOR below). The README points here; keep it complete.
NOT_SUPPORTED = [
    # a nonsmooth function anywhere but a prox term c * norm1|norm2(var) of the objective
    ('abs-inside-exp', V + "minimize sum(exp(abs(w))) + sumsq(w - y)\n", """\
t.opt:5:18: error: the nonsmooth function abs is not supported here
  minimize sum(exp(abs(w))) + sumsq(w - y)
                   ^^^^^^
a nonsmooth function may appear only as a term c * norm1(var) or c * norm2(var) of the objective (c a nonnegative scalar of params); write abs as constraints instead, e.g. with an epigraph var"""),
    ('abs-in-a-let', V + "let a = abs(w)\nminimize sum(exp(a)) + sumsq(w - y)\n", """\
t.opt:5:9: error: the nonsmooth function abs is not supported here
  let a = abs(w)
          ^^^^^^
a nonsmooth function may appear only as a term c * norm1(var) or c * norm2(var) of the objective (c a nonnegative scalar of params); write abs as constraints instead, e.g. with an epigraph var"""),
    ('norm1-inside-exp', P + "minimize sumsq(w - y) + exp(norm1(w))\n", """\
t.opt:5:29: error: the nonsmooth function norm1 is not supported here
  minimize sumsq(w - y) + exp(norm1(w))
                              ^^^^^^^^
a nonsmooth function may appear only as a term c * norm1(var) or c * norm2(var) of the objective (c a nonnegative scalar of params); write norm1 as constraints instead, e.g. with an epigraph var"""),
    ('relu-term', V + "minimize sumsq(w - y) + sum(relu(w))\n", """\
t.opt:5:29: error: the nonsmooth function relu is not supported here
  minimize sumsq(w - y) + sum(relu(w))
                              ^^^^^^^
a nonsmooth function may appear only as a term c * norm1(var) or c * norm2(var) of the objective (c a nonnegative scalar of params); write relu as constraints instead, e.g. with an epigraph var"""),
    ('neg-term', V + "minimize sumsq(w - y) + sum(neg(w))\n", """\
t.opt:5:29: error: the nonsmooth function neg is not supported here
  minimize sumsq(w - y) + sum(neg(w))
                              ^^^^^^
a nonsmooth function may appear only as a term c * norm1(var) or c * norm2(var) of the objective (c a nonnegative scalar of params); write neg as constraints instead, e.g. with an epigraph var"""),
    ('max-term', V + "minimize sumsq(w - y) + max(w)\n", """\
t.opt:5:25: error: the nonsmooth function max is not supported here
  minimize sumsq(w - y) + max(w)
                          ^^^^^^
a nonsmooth function may appear only as a term c * norm1(var) or c * norm2(var) of the objective (c a nonnegative scalar of params); write max as constraints instead, e.g. with an epigraph var"""),
    ('clip-inside', V + "minimize sumsq(clip(w, 0, 1) - y)\n", """\
t.opt:5:16: error: the nonsmooth function clip is not supported here
  minimize sumsq(clip(w, 0, 1) - y)
                 ^^^^^^^^^^^^^
a nonsmooth function may appear only as a term c * norm1(var) or c * norm2(var) of the objective (c a nonnegative scalar of params); write clip as constraints instead, e.g. with an epigraph var"""),
    ('norminf-term', P + "minimize sumsq(w - y) + mu * norminf(w)\n", """\
t.opt:5:30: error: the nonsmooth function norminf is not supported here
  minimize sumsq(w - y) + mu * norminf(w)
                               ^^^^^^^^^^
a nonsmooth function may appear only as a term c * norm1(var) or c * norm2(var) of the objective (c a nonnegative scalar of params); write norminf as constraints instead, e.g. with an epigraph var"""),
    ('group-norm', E + "minimize sumsq(X - Y) + mu * sum(norm2(X, axis=1))\n", """\
t.opt:5:34: error: the nonsmooth function norm2 is not supported here
  minimize sumsq(X - Y) + mu * sum(norm2(X, axis=1))
                                   ^^^^^^^^^^^^^^^^
a nonsmooth function may appear only as a term c * norm1(var) or c * norm2(var) of the objective (c a nonnegative scalar of params); write norm2 as constraints instead, e.g. with an epigraph var"""),
    # prox terms: on a var itself, with a nonnegative scalar coefficient, one per var
    ('norm1-of-matmul', P + "minimize sumsq(w - y) + mu * norm1(A @ w)\n", """\
t.opt:5:30: error: the nonsmooth function norm1 is not supported here
  minimize sumsq(w - y) + mu * norm1(A @ w)
                               ^^^^^^^^^^^^
norm1 has a known prox only applied to a var itself, as in lam * norm1(w); for norm1 of an expression e use an epigraph var t: -t <= e <= t as constraints and c * sum(t) in the objective"""),
    ('coefficient-of-unknown-sign', P + "minimize sumsq(w - y) + lam * norm1(w)\n", """\
t.opt:5:31: error: the nonsmooth function norm1 is not supported here
  minimize sumsq(w - y) + lam * norm1(w)
                                ^^^^^^^^
the coefficient of norm1 must be a nonnegative scalar: a number, or params declared with `>= 0` or `> 0` (e.g. `param lam >= 0`)"""),
    ('coefficient-negative', P + "minimize sumsq(w - y) + -1 * norm1(w)\n", """\
t.opt:5:30: error: the nonsmooth function norm1 is not supported here
  minimize sumsq(w - y) + -1 * norm1(w)
                               ^^^^^^^^
the coefficient of norm1 must be a nonnegative scalar: a number, or params declared with `>= 0` or `> 0` (e.g. `param lam >= 0`)"""),
    ('norm-subtracted', P + "minimize sumsq(w - y) - mu * norm2(w)\n", """\
t.opt:5:30: error: the nonsmooth function norm2 is not supported here
  minimize sumsq(w - y) - mu * norm2(w)
                               ^^^^^^^^
the coefficient of norm2 must be a nonnegative scalar: a number, or params declared with `>= 0` or `> 0` (e.g. `param lam >= 0`)"""),
    ('maximize-plus-norm', P + "maximize -sumsq(w - y) + mu * norm1(w)\n", """\
t.opt:5:31: error: the nonsmooth function norm1 is not supported here
  maximize -sumsq(w - y) + mu * norm1(w)
                                ^^^^^^^^
in a maximize a norm term is a penalty: subtract it (maximize g - c * norm1(x), c >= 0)"""),
    ('two-norm-terms', P + "minimize sumsq(w - y) + norm1(w) + mu * norm2(w)\n", """\
t.opt:5:41: error: a second nonsmooth term on the var 'w'
  minimize sumsq(w - y) + norm1(w) + mu * norm2(w)
                                          ^^^^^^^^
give each var at most one norm1 or norm2 term"""),
    ('norm1-twice', P + "minimize sumsq(w - y) + norm1(w) + mu * norm1(w)\n", """\
t.opt:5:41: error: a second nonsmooth term on the var 'w'
  minimize sumsq(w - y) + norm1(w) + mu * norm1(w)
                                          ^^^^^^^^
give each var at most one norm1 or norm2 term"""),
    # a prox term with constraints: its var may carry a box (with norm1 only), other vars known sets only
    ('norm1-and-simplex', Q + "  w >= 0\n  sum(w) == 1\n", """\
t.opt:5:30: error: the nonsmooth term norm1(w) cannot be combined with these constraints
  minimize sumsq(w - y) + mu * norm1(w)
                               ^^^^^^^^
the var 'w' combines sets or terms whose joint prox is not known; for norm1 use an epigraph var instead: `var t[..]`, `-t <= w <= t`, and c * sum(t) in the objective (a linear program the KKT path solves)"""),
    ('norm2-and-bound', P + "minimize sumsq(w - y) + mu * norm2(w)\nsubject to\n  w >= 0\n", """\
t.opt:5:30: error: the nonsmooth term norm2(w) cannot be combined with these constraints
  minimize sumsq(w - y) + mu * norm2(w)
                               ^^^^^^^^
the var 'w' combines sets or terms whose joint prox is not known; norm2 has a known prox only on a var with no constraint: bound it instead with `sumsq(w) <= s^2` for a param s, or drop the constraints"""),
    ('norm1-and-linear-eq', Q + "  A @ w == z\n", """\
t.opt:5:30: error: the nonsmooth term norm1(w) cannot be combined with these constraints
  minimize sumsq(w - y) + mu * norm1(w)
                               ^^^^^^^^
the constraint on line 7 is not a bound, a simplex or a ball on one var; for norm1 use an epigraph var instead: `var t[..]`, `-t <= w <= t`, and c * sum(t) in the objective (a linear program the KKT path solves)"""),
    ('norm1-and-linear-ineq', Q + "  A @ w <= z\n", """\
t.opt:5:30: error: the nonsmooth term norm1(w) cannot be combined with these constraints
  minimize sumsq(w - y) + mu * norm1(w)
                               ^^^^^^^^
the constraint on line 7 is not a bound, a simplex or a ball on one var; for norm1 use an epigraph var instead: `var t[..]`, `-t <= w <= t`, and c * sum(t) in the objective (a linear program the KKT path solves)"""),
    # general constraints (KKT, interior point): smooth, affine equalities, convex g <= 0; known sets
    ('nonlinear-eq', C + "  sumsq(w) == 1\n", """\
t.opt:7:3: error: a nonlinear equality constraint is not supported
    sumsq(w) == 1
    ^^^^^^^^^^^^^
the interior-point solver needs affine equalities (A @ x == b); write a convex inequality instead"""),
    ('concave-ineq', C + "  sumsq(w) >= 1\n", """\
t.opt:7:3: error: this constraint is concave: as g <= 0, g must be convex
    sumsq(w) >= 1
    ^^^^^^^^^^^^^
the interior-point solver handles convex g <= 0 (e.g. sumsq(x) <= r^2, exp(x) <= c); optlang checks convexity by composition rules (affine inside convex increasing, sums, nonnegative scaling)"""),
    ('concave-sqrt-ineq', C + "  sum(sqrt(w)) <= 1\n", """\
t.opt:7:3: error: this constraint is concave: as g <= 0, g must be convex
    sum(sqrt(w)) <= 1
    ^^^^^^^^^^^^^^^^^
the interior-point solver handles convex g <= 0 (e.g. sumsq(x) <= r^2, exp(x) <= c); optlang checks convexity by composition rules (affine inside convex increasing, sums, nonnegative scaling)"""),
    ('ineq-not-provably-convex', C + "  sin(w) <= 1\n", """\
t.opt:7:3: error: this constraint is not provably convex: as g <= 0, g must be convex
    sin(w) <= 1
    ^^^^^^^^^^^
the interior-point solver handles convex g <= 0 (e.g. sumsq(x) <= r^2, exp(x) <= c); optlang checks convexity by composition rules (affine inside convex increasing, sums, nonnegative scaling)"""),
    ('bilinear-ineq', "problem p\ndim n\nparam y[n]\nvar x[n], u[n]\nminimize sumsq(x - y) + sumsq(u)\nsubject to\n  dot(x, u) <= 1\n", """\
t.opt:7:3: error: this constraint is not provably convex: as g <= 0, g must be convex
    dot(x, u) <= 1
    ^^^^^^^^^^^^^^
the interior-point solver handles convex g <= 0 (e.g. sumsq(x) <= r^2, exp(x) <= c); optlang checks convexity by composition rules (affine inside convex increasing, sums, nonnegative scaling)"""),
    ('norm1-constraint', C + "  norm1(w) <= 1\n", """\
t.opt:7:3: error: the nonsmooth function norm1 is not supported here
    norm1(w) <= 1
    ^^^^^^^^
general constraints must be smooth (the interior-point method uses their derivatives); rewrite norm1 with linear inequalities, e.g. abs(x) <= c as -c <= x <= c, or norm1(x) <= c with an epigraph var t: -t <= x <= t and sum(t) <= c"""),
    ('abs-constraint', C + "  abs(w) <= 1\n", """\
t.opt:7:3: error: the nonsmooth function abs is not supported here
    abs(w) <= 1
    ^^^^^^
general constraints must be smooth (the interior-point method uses their derivatives); rewrite abs with linear inequalities, e.g. abs(x) <= c as -c <= x <= c, or norm1(x) <= c with an epigraph var t: -t <= x <= t and sum(t) <= c"""),
    ('abs-inside-constraint', C + "  sum(exp(abs(w))) <= 3\n", """\
t.opt:7:11: error: the nonsmooth function abs is not supported here
    sum(exp(abs(w))) <= 3
            ^^^^^^
general constraints must be smooth (the interior-point method uses their derivatives); rewrite abs with linear inequalities, e.g. abs(x) <= c as -c <= x <= c, or norm1(x) <= c with an epigraph var t: -t <= x <= t and sum(t) <= c"""),
    ('shifted-ball', C + "  norm2(w - y) <= r\n", """\
t.opt:7:3: error: the nonsmooth function norm2 is not supported here
    norm2(w - y) <= r
    ^^^^^^^^^^^^
general constraints must be smooth (the interior-point method uses their derivatives); write norm2(e) <= r as sumsq(e) <= r^2"""),
    ('labelled-ball-radius-may-be-zero', C + "  ball: norm2(w) <= mu\n", """\
t.opt:7:3: error: a labelled ball needs a positive radius
    ball: norm2(w) <= mu
    ^^^^^^^^^^^^^^^^^^^^
at r = 0 the dual of norm2(x) <= r is not defined (it is 2r times the dual of sumsq(x) <= r^2, which optlang solves); declare the radius's params with `> 0`"""),
    ('ball-radius-of-unknown-sign', C + "  norm2(w) <= lam\n", """\
t.opt:7:3: error: the radius of a ball must be provably nonnegative
    norm2(w) <= lam
    ^^^^^^^^^^^^^^^
declare its params with `>= 0` or `> 0` (e.g. `param r > 0`); a negative radius leaves no point"""),
    # root and fixed_point: smooth equations
    ('relu-fixed-point', D + "fixed_point z = relu(W @ z) + bias\n", """\
t.opt:5:17: error: the nonsmooth function relu is not supported here
  fixed_point z = relu(W @ z) + bias
                  ^^^^^^^^^^^
a fixed-point map must be smooth (the backward pass uses its Jacobian); replace relu with a smooth function such as softplus"""),
    # options: the solvers and backward methods of each class (passes/select.py SOLVERS, BACKWARDS)
    ('solver-admm', S + "options\n  solver = \"admm\"\n", """\
t.opt:7:3: error: solver "admm" is not provided by this version of optlang
    solver = "admm"
    ^^^^^^^^^^^^^^^
for an unconstrained smooth problem use "auto" or "newton\""""),
    ('solver-ipm', S + "options\n  solver = \"ipm\"\n", """\
t.opt:7:3: error: solver "ipm" is not available for this problem
    solver = "ipm"
    ^^^^^^^^^^^^^^
for an unconstrained smooth problem use "auto" or "newton\""""),
    ('solver-anderson-not-fixed-point', K + "options\n  solver = \"anderson\"\n", """\
t.opt:6:3: error: solver "anderson" is not available for this problem
    solver = "anderson"
    ^^^^^^^^^^^^^^^^^^^
for a root problem use "auto" or "newton\""""),
    ('root-solver-pgd', K + "options\n  solver = \"pgd\"\n", """\
t.opt:6:3: error: solver "pgd" is not available for this problem
    solver = "pgd"
    ^^^^^^^^^^^^^^
for a root problem use "auto" or "newton\""""),
    ('bounds-solver-newton', V + "minimize sumsq(w - y)\nsubject to\n  w >= 0\noptions\n  solver = \"newton\"\n", """\
t.opt:9:3: error: solver "newton" is not available for this problem
    solver = "newton"
    ^^^^^^^^^^^^^^^^^
for a problem with bounds, simplex or ball sets, or norm terms use "auto" or "fista" or "pgd\""""),
    ('kkt-solver-fista', C + "  A @ w == z\noptions\n  solver = \"fista\"\n", """\
t.opt:9:3: error: solver "fista" is not available for this problem
    solver = "fista"
    ^^^^^^^^^^^^^^^^
for a problem with general constraints use "auto" or "ipm\""""),
    ('kkt-backward-cg', C + "  A @ w == z\noptions\n  backward = \"cg\"\n", """\
t.opt:9:3: error: backward "cg" is not available for this problem
    backward = "cg"
    ^^^^^^^^^^^^^^^
for a problem with general constraints use "auto" or "direct" or "gmres" or "unroll" (CG needs a symmetric positive definite system: a Hessian, or a prox whose Jacobian is a projection: boxes, norm1, a simplex)"""),
    ('kkt-backward-neumann', C + "  A @ w <= z\noptions\n  backward = \"neumann\"\n", """\
t.opt:9:3: error: backward "neumann" is not available for this problem
    backward = "neumann"
    ^^^^^^^^^^^^^^^^^^^^
for a problem with general constraints use "auto" or "direct" or "gmres" or "unroll" (the Neumann series converges for Hessians and contractive fixed points, not for KKT systems or general roots)"""),
    ('root-backward-cg', K + "options\n  backward = \"cg\"\n", """\
t.opt:6:3: error: backward "cg" is not available for this problem
    backward = "cg"
    ^^^^^^^^^^^^^^^
for a root problem use "auto" or "direct" or "gmres" or "unroll" (CG needs a symmetric positive definite system: a Hessian, or a prox whose Jacobian is a projection: boxes, norm1, a simplex)"""),
    ('root-backward-neumann', K + "options\n  backward = \"neumann\"\n", """\
t.opt:6:3: error: backward "neumann" is not available for this problem
    backward = "neumann"
    ^^^^^^^^^^^^^^^^^^^^
for a root problem use "auto" or "direct" or "gmres" or "unroll" (the Neumann series converges for Hessians and contractive fixed points, not for KKT systems or general roots)"""),
    ('ball-backward-cg', C + "  norm2(w) <= 1\noptions\n  backward = \"cg\"\n", """\
t.opt:9:3: error: backward "cg" is not available for this problem
    backward = "cg"
    ^^^^^^^^^^^^^^^
for a problem with bounds, simplex or ball sets, or norm terms use "auto" or "direct" or "gmres" or "neumann" or "unroll" (CG needs a symmetric positive definite system: a Hessian, or a prox whose Jacobian is a projection: boxes, norm1, a simplex)"""),
]

@pytest.mark.parametrize("src, expected", [pytest.param(s, e, id=i) for i, s, e in OPT_ERRORS])
def test_error_message(src, expected):
    err = error_of(src)
    assert type(err) is OptError
    assert str(err) == expected


@pytest.mark.parametrize("src, expected", [pytest.param(s, e, id=i) for i, s, e in NOT_SUPPORTED])
def test_not_supported_message(src, expected):
    err = error_of(src)
    assert type(err) is NotSupportedError
    assert str(err) == expected


# ---- once rejected, now compiled ---------------------------------------------------------

# Programs that earlier versions refused (most were NOT_SUPPORTED entries), with the class the
# compiler now puts them in (layer.plan.kind: smooth, prox, kkt or root).
NOW_SUPPORTED = [
    # prox terms c * norm1|norm2(var), c a nonnegative scalar of params
    ('lasso-norm1', "problem lasso\ndim n, d\nparam X[n, d], y[n], lam >= 0\nvar w[d]\n"
                    "minimize 0.5 * sumsq(X @ w - y) + lam * norm1(w)\n", "prox"),
    ('norm2-term', V + "minimize sumsq(w - y) + norm2(w)\n", "prox"),
    ('norm1-scalar-var', "problem p\nparam y, lam >= 0\nvar w\nminimize (w - y)^2 + lam * norm1(w)\n", "prox"),
    ('norm1-matrix-var', E + "minimize sumsq(X - Y) + mu * norm1(X)\n", "prox"),
    ('coefficient-expression', P + "minimize sumsq(w - y) + (mu * r + exp(r)) / 2 * norm2(w)\n", "prox"),
    ('maximize-minus-norm', P + "maximize -sumsq(w - y) - mu * norm1(w)\n", "prox"),
    # known sets: boxes with param bounds, simplex (also row-wise), ball; with a norm1 term on a box
    ('simplex-eq', V + "minimize sumsq(w - y)\nsubject to\n  w >= 0\n  sum(w) == 1\n", "prox"),
    # A ball with a label or beside other constraints goes to KKT as sumsq(x) <= r^2 (duals as written).
    ('ball-and-bound', C + "  norm2(w) <= r\n  w >= 0\n", "kkt"),
    ('ball-and-linear-eq', C + "  norm2(w) <= r\n  A @ w == z\n", "kkt"),
    ('labelled-ball', C + "  ball: norm2(w) <= r\n", "kkt"),
    ('simplex-rows-param-total', "problem p\ndim n, k\nparam Y[n, k], t[n] > 0\nvar X[n, k]\n"
                                 "minimize sumsq(X - Y)\nsubject to\n  X >= 0\n  sum(X, axis=1) == t\n", "prox"),
    # A total of unknown sign is no scaled simplex (c * P(z / c) needs c > 0): the KKT path takes it.
    ('simplex-total-of-unknown-sign', "problem p\ndim n, k\nparam Y[n, k], t[n]\nvar X[n, k]\n"
                                      "minimize sumsq(X - Y)\nsubject to\n  X >= 0\n  sum(X, axis=1) == t\n", "kkt"),
    ('simplex-rows', "problem p\ndim n, k\nparam Y[n, k]\nvar X[n, k]\n"
                     "minimize sumsq(X - Y)\nsubject to\n  X >= 0\n  sum(X, axis=1) == 1\n", "prox"),
    ('simplex-columns-ones', "problem p\ndim n, k\nparam Y[n, k]\nvar X[n, k]\n"
                             "minimize sumsq(X - Y)\nsubject to\n  X >= 0\n  sum(X, axis=0) == ones[k]\n", "prox"),
    ('box-param-bounds', C + "  -r <= w <= y\n", "prox"),
    ('ball', C + "  norm2(w) <= r\n", "prox"),
    ('norm1-and-box', Q + "  0 <= w <= 1\n", "prox"),
    # general constraints: KKT
    ('linear-eq', V + "minimize sumsq(w - y)\nsubject to\n  A @ w == z\n", "kkt"),
    ('linear-ineq', V + "minimize sumsq(w - y)\nsubject to\n  A @ w <= z\n", "kkt"),
    ('var-on-both-sides', V + "minimize sumsq(w - y)\nsubject to\n  y >= w - 1\n", "kkt"),
    ('general-constraint', V + "minimize sumsq(w - y)\nsubject to\n  sumsq(w) <= 1\n", "kkt"),
    ('convex-exp-ineq', C + "  sum(exp(w)) <= r\n", "kkt"),
    ('concave-ge', C + "  sum(sqrt(w)) >= 1\n", "kkt"),
    ('second-lower-bound', V + "minimize sumsq(w - y)\nsubject to\n  w >= 0\n  w >= y\n", "kkt"),
    ('second-upper-bound', V + "minimize sumsq(w - y)\nsubject to\n  w <= 1\n  -1 <= w <= y\n", "kkt"),
    ('simplex-without-nonneg', C + "  sum(w) == 1\n", "kkt"),
    ('maximize-concave', "problem p\ndim n\nparam y[n]\nvar w[n]\nmaximize -sumsq(w - y)\nsubject to\n"
                         "  sum(w) <= 1\n", "kkt"),
    # labels: a labelled bound or simplex is solved by KKT, which returns its dual (a labelled ball is not)
    ('labelled-bound', V + "minimize sumsq(w - y)\nsubject to\n  pos: w >= 0\n", "kkt"),
    ('labelled-simplex', C + "  w >= 0\n  total: sum(w) == 1\n", "kkt"),
    ('qp-labels', "problem qp\ndim n, m, p\nparam Q[n, n] psd, c[n], G[m, n], h[m], A[p, n], b[p]\nvar z[n]\n"
                  "minimize 0.5 * quad(z, Q) + dot(c, z)\nsubject to\n  ineq: G @ z <= h\n  eq:   A @ z == b\n",
     "kkt"),
    # several vars, vars of any rank
    ('two-vars-one-line', "problem p\ndim n\nparam y[n]\nvar x[n], u[n]\nminimize sumsq(x - y) + sumsq(u)\n",
     "smooth"),
    ('two-vars-two-lines', "problem p\ndim n\nparam y[n]\nvar x[n]\nvar u[n]\nminimize sumsq(x - y) + sumsq(u)\n",
     "smooth"),
    ('two-vars-sets-and-term', "problem p\ndim n\nparam y[n], lam >= 0\nvar x[n], u[n]\n"
                               "minimize sumsq(x - y) + sumsq(u - x) + lam * norm1(u)\nsubject to\n"
                               "  x >= 0\n  sum(x) == 1\n  u <= 1\n", "prox"),
    ('two-vars-coupled', "problem p\ndim n\nparam y[n]\nvar x[n], u[n]\nminimize sumsq(x - y) + sumsq(u)\n"
                         "subject to\n  x + u == y\n", "kkt"),
    ('norm1-epigraph', "problem p\ndim n, m\nparam y[n], z[m], A[m, n], mu >= 0\nvar w[n], t[n]\n"
                       "minimize sumsq(w - y) + mu * sum(t)\nsubject to\n  -t <= w <= t\n  A @ w == z\n", "kkt"),
    ('matrix-var', "problem p\ndim n\nparam Y[n, n]\nvar X[n, n]\nminimize sumsq(X - Y)\n", "smooth"),
    ('rank-3-var', "problem p\ndim a, b, c\nparam Y[a, b, c]\nvar X[a, b, c]\nminimize sumsq(X - Y)\n", "smooth"),
    # equations and options
    ('fixed-point-solver-anderson', D + "fixed_point z = tanh(W @ z + bias)\noptions\n  solver = \"anderson\"\n"
                                    "  backward = \"neumann\"\n", "root"),
    ('fixed-point-solver-newton', D + "fixed_point z = tanh(W @ z + bias)\noptions\n  solver = \"newton\"\n",
     "root"),
    ('root-backward-gmres', K + "options\n  backward = \"gmres\"\n", "root"),
    ('backward-gmres', S + "options\n  backward = \"gmres\"\n", "smooth"),
    ('box-backward-cg', C + "  w >= 0\noptions\n  backward = \"cg\"\n", "prox"),
    ('norm2-solver-pgd-backward-neumann', P + "minimize sumsq(w - y) + mu * norm2(w)\noptions\n"
                                          "  solver = \"pgd\"\n  backward = \"neumann\"\n", "prox"),
    ('kkt-solver-ipm-backward-unroll', C + "  A @ w <= z\noptions\n  solver = \"ipm\"\n  backward = \"unroll\"\n",
     "kkt"),
]


@pytest.mark.parametrize("src, kind", [pytest.param(s, k, id=i) for i, s, k in NOW_SUPPORTED])
def test_now_supported(src, kind):
    layer = optlang.compile_string(src, "t.opt")
    assert layer.plan.kind == kind


# ---- messages that were once poor, pinned at what they now say ---------------------------

def poor(id_: str, src: str, expected: str, reason: str):
    """`reason` records what the message used to get wrong."""
    return pytest.param(src, expected, id=id_)


POOR = [
    poor("max-iter-overflows", S + "options\n  max_iter = 1e400\n", """\
t.opt:7:14: error: the number 1e400 is too large: it overflows float64 (to inf)
    max_iter = 1e400
               ^^^^^
numbers must have a magnitude below 1.8e308""", "OverflowError from int(inf) in ir/check.py option_value, not an OptError"),
    poor("axis-given-twice", V + "minimize sumsq(w) + sum(w, axis=0, axis=0)\n", """\
t.opt:5:36: error: axis is given twice in sum
  minimize sumsq(w) + sum(w, axis=0, axis=0)
                                     ^^^^^^
keep one axis=k""", "a repeated keyword is silently accepted (ir/calls.py _axis keeps the last)"),
    poor("dot-of-two-scalars", V + "minimize sumsq(w) + dot(s, lam)\n", """\
t.opt:5:21: error: dot needs vectors or arrays, found two scalars
  minimize sumsq(w) + dot(s, lam)
                      ^^^^^^^^^^^
multiply scalars with '*': s * lam""",
         "says 'needs two arrays of the same shape' although both are scalars (same shape)"),
    poor("let-used-before-declared", V + "let a = b + 1\nlet b = w\nminimize sumsq(a)\n", """\
t.opt:5:9: error: 'b' is used before it is declared
  let a = b + 1
          ^
'b' is declared at line 6; move that declaration above this line""",
         "says 'unknown name' and 'declare it' although 'b' is declared on the next line"),
    poor("function-name-as-value", V + "minimize sumsq + sumsq(w)\n", """\
t.opt:5:10: error: 'sumsq' is a function, not a value
  minimize sumsq + sumsq(w)
           ^^^^^
call it with its arguments, e.g. sumsq(x)""",
         "says 'declare it with dim, param, var or let' for a built-in function name"),
    poor("shape-dim-typo-suggests", "problem p\ndim n\nparam y[nn]\nvar w[n]\nminimize sumsq(w)\n", """\
t.opt:3:9: error: 'nn' is not declared; a shape entry must be a dim or an integer
  param y[nn]
          ^^
declare it with `dim nn` before 'y'; did you mean 'n'?""",
         "no 'did you mean' for a misspelt dim in a shape (ir/build.py resolve_shape)"),
    poor("psd-hint-names-the-file-dims", "problem p\ndim k\nparam S[k, 3] psd, y[k]\nvar w[k]\nminimize sumsq(w - y)\n", """\
t.opt:3:15: error: 'psd' needs a square matrix
  param S[k, 3] psd, y[k]
                ^^^
'S' is declared [k, 3]; declare it square, e.g. [k, k]""",
         "the hint is hard-coded 'declare it [n, n]', naming a dim the file does not have"),
    poor("nonsmooth-bound", V + "minimize sumsq(w - y)\nsubject to\n  w >= abs(y)\n", """\
t.opt:7:8: error: the nonsmooth function abs is not supported here
    w >= abs(y)
         ^^^^^^
bounds, radii and simplex totals must be smooth in the params; compute this one outside the problem \
and pass it as a param""",
         "the hint talks about a smooth objective although the function is in a bound"),
    poor("nonsmooth-root", K.replace("sin(E)", "abs(E)"), """\
t.opt:4:14: error: the nonsmooth function abs is not supported here
  root E - e * abs(E) - M
               ^^^^^^
a root equation must be smooth (Newton and the backward pass use its Jacobian); replace abs with a \
smooth function""",
         "the hint talks about an objective, proximal terms and bounds in a root problem"),
    poor("nonsmooth-fixed-point",
         "problem deq\ndim d\nparam W[d, d], bias[d]\nvar z[d]\nfixed_point z = relu(W @ z + bias)\n", """\
t.opt:5:17: error: the nonsmooth function relu is not supported here
  fixed_point z = relu(W @ z + bias)
                  ^^^^^^^^^^^^^^^^^^
a fixed-point map must be smooth (the backward pass uses its Jacobian); replace relu with a smooth \
function such as softplus""",
         "the hint talks about an objective; the name is the internal 'relu/pos/neg'"),
    poor("fixed-point-backward-cg",
         "problem deq\ndim d\nparam W[d, d], bias[d]\nvar z[d]\nfixed_point z = tanh(W @ z + bias)\n"
         "options\n  backward = \"cg\"\n", """\
t.opt:7:3: error: backward "cg" is not available for this problem
    backward = "cg"
    ^^^^^^^^^^^^^^^
for a fixed point problem use "auto" or "direct" or "gmres" or "neumann" or "unroll" (CG needs a \
symmetric positive definite system: a Hessian, or a prox whose Jacobian is a projection: boxes, norm1, a simplex)""",
         "calls the user's fixed_point a 'root problem' (the IR's normalized form leaks); this case was "
         "solver = \"anderson\", which fixed points now accept"),
    poor("multiline-span", V + "minimize sumsq(w\n  - z)\n", """\
t.opt:5:16: error: '-' needs shapes that broadcast
  minimize sumsq(w
                 ^
    - z)
    ^^^
the left side is [n] but the right side is [m]; elementwise operations follow NumPy broadcasting \
(trailing dims equal, or 1)""",
         "a span over two lines shows only its first line: the caret is under 'w', the '-' is not shown"),
]


@pytest.mark.parametrize("src, expected", POOR)
def test_once_poor_message(src, expected):
    assert str(error_of(src)) == expected


def test_long_expression_is_not_a_recursion_error():
    src = "problem p\nvar w\nminimize " + " + ".join(["w^2"] * 600) + "\n"
    try:
        optlang.compile_string(src, name="t.opt")
    except OptError:
        pass  # refusing it with a clear OptError would be acceptable too


# ---- the caret points at the offending part ---------------------------------------------

def at(err: OptError) -> tuple[int, int, int, int]:
    return (err.span.line, err.span.col, err.span.end_line, err.span.end_col)


@pytest.mark.parametrize("src, span, text", [
    pytest.param(V + "minimize sumsq(A @ z)\n", (5, 16, 5, 21), "A @ z", id="matmul-operands"),
    pytest.param(V + "minimize sumsq(w - yy)\n", (5, 20, 5, 22), "yy", id="unknown-name"),
    pytest.param(V + "minimize sum(w, axis=1)\n", (5, 22, 5, 23), "1", id="axis-value"),
    pytest.param(V + "minimize sum(exp(w, axis=0))\n", (5, 21, 5, 27), "axis=0", id="bad-keyword"),
    pytest.param(S + "options\n  solver = \"foo\"\n", (7, 12, 7, 17), '"foo"', id="option-value"),
    pytest.param(S + "options\n  foo = 1\n", (7, 3, 7, 6), "foo", id="option-key"),
    pytest.param("problem p\ndim n\nparam y[n], y[n]\nvar w[n]\nminimize sumsq(w)\n", (3, 13, 3, 14), "y",
                 id="second-declaration"),
    pytest.param("problem p\ndim m, n\nparam A[m, n] psd\nvar w[n]\nminimize sumsq(w)\n", (3, 15, 3, 18), "psd",
                 id="attribute"),
    pytest.param(V + "let a = abs(w)\nminimize sum(exp(a)) + sumsq(w - y)\n", (5, 9, 5, 15), "abs(w)",
                 id="nonsmooth-inside-let"),
    pytest.param(C + "  sumsq(w) == 1\n", (7, 3, 7, 16), "sumsq(w) == 1", id="constraint"),
    pytest.param(C + "  sum(exp(abs(w))) <= 3\n", (7, 11, 7, 17), "abs(w)", id="nonsmooth-inside-constraint"),
    pytest.param(P + "minimize sumsq(w - y) + norm1(w) + mu * norm2(w)\n", (5, 41, 5, 49), "norm2(w)",
                 id="second-norm-term"),
    pytest.param(C + "  c: w >= 0\n  c: sum(w) <= 1\n", (8, 3, 8, 4), "c", id="second-label"),
    pytest.param(C + "  box: 0 <= w <= 1\n", (7, 3, 7, 6), "box", id="label-of-chain"),
    pytest.param(C + "  A @ w == z\noptions\n  backward = \"cg\"\n", (9, 3, 9, 18), 'backward = "cg"',
                 id="option-line"),
])
def test_span(src, span, text):
    err = error_of(src)
    assert at(err) == span
    line = src.splitlines()[span[0] - 1]
    assert line[span[1] - 1:span[3] - 1] == text


@pytest.mark.parametrize("src, expected", [pytest.param(s, e, id=i) for i, s, e in OPT_ERRORS + NOT_SUPPORTED])
def test_caret_underlines_source_text(src, expected):
    """The head's line:col is the span's, and the caret sits under text, never past it or on blanks."""
    err = error_of(src)
    head, shown, caret = str(err).splitlines()[:3]
    assert head.startswith(f"t.opt:{err.span.line}:{err.span.col}: error: ")
    line = src.splitlines()[err.span.line - 1]
    assert shown == "  " + line
    start = len(caret) - len(caret.lstrip())
    under = shown[start:len(caret)]
    assert caret.strip("^ ") == "" and under.strip() != "" and len(caret) <= len(shown)


# ---- no input raises anything but OptError ----------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
VALID = [p.read_text() for p in sorted(EXAMPLES.glob("*.opt"))] + [
    # From LANGUAGE.md: all of them compile in this version.
    "problem qp\ndim n, m, p\nparam Q[n, n] psd, c[n], G[m, n], h[m], A[p, n], b[p]\nvar z[n]\n"
    "minimize 0.5 * quad(z, Q) + dot(c, z)\nsubject to\n  ineq: G @ z <= h\n  eq:   A @ z == b\n",
    "problem sparsemax\ndim n\nparam v[n]\nvar x[n]\nminimize 0.5 * sumsq(x - v)\nsubject to\n"
    "  x >= 0\n  sum(x) == 1\n",
    "problem lasso\ndim n, d\nparam X[n, d], y[n], lam >= 0\nvar w[d]\n"
    "minimize 0.5 * sumsq(X @ w - y) + lam * norm1(w)\n",
    "problem deq\ndim d, k\nparam W[d, d], U[d, k], u[k], bias[d]\nvar z[d]\n"
    "fixed_point z = tanh(W @ z + U @ u + bias)\n",
    # Lets, axes, transposes, literals and a full options block.
    "problem mix\ndim n, k = 3\nparam A[n, k], S[k, k] psd, v[n], t in (0, 1]\nvar x[k]\n"
    "let r = A @ x - v\nminimize 0.5 * sumsq(r) + t * quad(x, S) + mean(exp(A' @ r), axis=0)"
    " + logsumexp(x) + sum(eye[k] @ x * ones[k])\nsubject to\n  -1 <= x <= 1\noptions\n"
    "  solver = \"fista\"\n  tol = 1e-8\n  max_iter = 200\n  backward = \"direct\"\n",
    # Several vars of several ranks with a row-wise simplex and a norm2 term; labels, a convex inequality, ipm.
    "problem many\ndim n, k\nparam Y[n, k], v[k], c[k], r > 0, mu >= 0\nvar P[n, k], x[k], s\n"
    "minimize sumsq(P - Y) + 0.5 * sumsq(x - v) + mu * norm2(x) + s^2\nsubject to\n  P >= 0\n"
    "  sum(P, axis=1) == 1\n",
    "problem kkt\ndim n, m\nparam A[m, n], b[m], c[n], r > 0\nvar x[n], t\n"
    "minimize dot(c, x) + sumsq(x) + t^2\nsubject to\n  eq: A @ x == b\n  cap: sum(exp(x)) <= r + t\n"
    "  ball: sumsq(x) <= r^2\n  low: t >= -1\noptions\n  solver = \"ipm\"\n  backward = \"gmres\"\n",
]
TOKEN = re.compile(r'"[^"\n]*"|[A-Za-z_]\w*|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+|<=|>=|==|\s+|.')
POOL = ["n", "m", "d", "k", "w", "x", "z", "A", "q", "sum", "sumsq", "dot", "quad", "norm1", "abs", "exp",
        "transpose", "clip", "eye", "zeros", "axis", "var", "param", "dim", "let", "psd", "symmetric", "in",
        "root", "fixed_point", "minimize", "subject", "to", "options", "tol", "max_iter", "solver",
        "0", "1", "-1", "0.5", "1e400", "'", "@", "*", "+", "-", "^", "(", ")", "[", "]", ",", "=", "==",
        "<=", ">=", ":", "\n", '"auto"', '"ipm"']


def _in_brackets(tokens: list[str]) -> list[int]:
    depth, out = 0, []
    for i, t in enumerate(tokens):
        depth += (t == "[") - (t == "]")
        if depth > 0 and t not in ("[", ",") and not t.isspace():
            out.append(i)
    return out


@st.composite
def mutants(draw) -> str:
    """A valid program with one to three small edits: a name swapped, a token dropped, a dim changed, ..."""
    tokens = TOKEN.findall(draw(st.sampled_from(VALID)))
    names = sorted({t for t in tokens if re.fullmatch(r"[A-Za-z_]\w*", t)})
    for _ in range(draw(st.integers(1, 3))):
        spots = [i for i, t in enumerate(tokens) if not t.isspace()]
        edit = draw(st.sampled_from(["swap-name", "drop", "change-dim", "insert", "replace", "copy"]))
        i = draw(st.sampled_from(spots))
        idents = [j for j in spots if tokens[j] in names]
        shape_entries = _in_brackets(tokens)
        if edit == "swap-name" and idents:
            tokens[draw(st.sampled_from(idents))] = draw(st.sampled_from(names))
        elif edit == "change-dim" and shape_entries:
            j = draw(st.sampled_from(shape_entries))
            tokens[j] = draw(st.sampled_from(["0", "1", "3", "2.5", "n", "m", "k", "d", "x", "n, n"]))
        elif edit == "drop":
            del tokens[i]
        elif edit == "insert":
            tokens.insert(i, draw(st.sampled_from(POOL)) + " ")
        elif edit == "replace":
            tokens[i] = draw(st.sampled_from(POOL))
        else:  # "copy", or an edit with nothing to act on: copy another token over this one
            tokens[i] = tokens[draw(st.sampled_from(spots))]
    return "".join(tokens)


@pytest.mark.parametrize("src", VALID, ids=lambda s: s.split("problem ")[1].split()[0])
def test_unmutated_programs_compile(src):
    optlang.compile_string(src, name="t.opt")


@given(mutants())
def test_mutated_programs_raise_only_opt_error(src):
    try:
        optlang.compile_string(src, name="t.opt")
    except OptError as err:
        lines = str(err).splitlines()
        assert lines[0].startswith("t.opt:") and ": error: " in lines[0]
        assert len(lines) >= 3 and set(lines[2].strip()) == {"^"}


@pytest.mark.parametrize("src, expected", [
    ("problem p\nparam a[3]\nvar x, y\nroot a * x + y\n", """\
t.opt:4:6: error: root needs as many equations as unknowns
  root a * x + y
       ^^^^^^^^^
the expression is [3] but the vars hold x scalar + y scalar entries; give the equations with the vars' total size \
(stack them in one vector)"""),
    ("problem p\nparam a\nvar z, w\nfixed_point z = tanh(a * z) + 1\n", """\
t.opt:3:8: error: a fixed point solves for the one var on its left; 'w' is a second var
  var z, w
         ^
make 'w' a param, or stack both into 'z' (z = g(z) on the joint vector)"""),
], ids=["root-two-vars-too-many-equations", "fixed-point-second-var"])
def test_several_vars_in_equations(src, expected):
    """A root over several vars needs their total size of equations; a fixed point has one var."""
    assert str(error_of(src)) == expected
