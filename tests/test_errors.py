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
the options are backward, max_iter, solver, tol"""),
    ('unknown-option-tolerance', S + "options\n  tolerance = 1e-6\n", """\
t.opt:7:3: error: unknown option 'tolerance'
    tolerance = 1e-6
    ^^^^^^^^^
the options are backward, max_iter, solver, tol"""),
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
t.opt:7:9: error: option tol must be positive
    tol = -1
          ^^
found -1"""),
    ('tol-zero', S + "options\n  tol = 0\n", """\
t.opt:7:9: error: option tol must be positive
    tol = 0
          ^
found 0"""),
    ('tol-underflows', S + "options\n  tol = 1e-400\n", """\
t.opt:7:9: error: option tol must be positive
    tol = 1e-400
          ^^^^^^
found 0.0"""),
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
]

NOT_SUPPORTED = [
    ('lasso-norm1', "problem lasso\ndim n, d\nparam X[n, d], y[n], lam >= 0\nvar w[d]\nminimize 0.5 * sumsq(X @ w - y) + lam * norm1(w)\n", """\
t.opt:5:41: error: the nonsmooth function norm1 is not supported yet
  minimize 0.5 * sumsq(X @ w - y) + lam * norm1(w)
                                          ^^^^^^^^
this version needs a smooth objective (proximal terms such as lam * norm1(w) come in a later version); for bounds on the var write them as constraints"""),
    ('abs-inside-exp', V + "minimize sum(exp(abs(w))) + sumsq(w - y)\n", """\
t.opt:5:18: error: the nonsmooth function abs is not supported yet
  minimize sum(exp(abs(w))) + sumsq(w - y)
                   ^^^^^^
this version needs a smooth objective (proximal terms such as lam * norm1(w) come in a later version); for bounds on the var write them as constraints"""),
    ('abs-in-a-let', V + "let a = abs(w)\nminimize sum(exp(a)) + sumsq(w - y)\n", """\
t.opt:5:9: error: the nonsmooth function abs is not supported yet
  let a = abs(w)
          ^^^^^^
this version needs a smooth objective (proximal terms such as lam * norm1(w) come in a later version); for bounds on the var write them as constraints"""),
    ('norm2-term', V + "minimize sumsq(w - y) + norm2(w)\n", """\
t.opt:5:25: error: the nonsmooth function norm2 is not supported yet
  minimize sumsq(w - y) + norm2(w)
                          ^^^^^^^^
this version needs a smooth objective (proximal terms such as lam * norm1(w) come in a later version); for bounds on the var write them as constraints"""),
    ('relu-term', V + "minimize sumsq(w - y) + sum(relu(w))\n", """\
t.opt:5:29: error: the nonsmooth function relu is not supported yet
  minimize sumsq(w - y) + sum(relu(w))
                              ^^^^^^^
this version needs a smooth objective (proximal terms such as lam * norm1(w) come in a later version); for bounds on the var write them as constraints"""),
    ('neg-term', V + "minimize sumsq(w - y) + sum(neg(w))\n", """\
t.opt:5:29: error: the nonsmooth function neg is not supported yet
  minimize sumsq(w - y) + sum(neg(w))
                              ^^^^^^
this version needs a smooth objective (proximal terms such as lam * norm1(w) come in a later version); for bounds on the var write them as constraints"""),
    ('max-term', V + "minimize sumsq(w - y) + max(w)\n", """\
t.opt:5:25: error: the nonsmooth function max is not supported yet
  minimize sumsq(w - y) + max(w)
                          ^^^^^^
this version needs a smooth objective (proximal terms such as lam * norm1(w) come in a later version); for bounds on the var write them as constraints"""),
    ('clip-inside', V + "minimize sumsq(clip(w, 0, 1) - y)\n", """\
t.opt:5:16: error: the nonsmooth function clip is not supported yet
  minimize sumsq(clip(w, 0, 1) - y)
                 ^^^^^^^^^^^^^
this version needs a smooth objective (proximal terms such as lam * norm1(w) come in a later version); for bounds on the var write them as constraints"""),
    ('linear-eq', V + "minimize sumsq(w - y)\nsubject to\n  A @ w == z\n", """\
t.opt:7:3: error: linear equality constraints are not supported yet
    A @ w == z
    ^^^^^^^^^^
this version handles bounds on the var (x >= lo, x <= hi, lo <= x <= hi) with param-only bounds; KKT-based constraints come in a later version"""),
    ('linear-ineq', V + "minimize sumsq(w - y)\nsubject to\n  A @ w <= z\n", """\
t.opt:7:3: error: linear inequality constraints are not supported yet
    A @ w <= z
    ^^^^^^^^^^
this version handles bounds on the var (x >= lo, x <= hi, lo <= x <= hi) with param-only bounds; KKT-based constraints come in a later version"""),
    ('simplex-eq', V + "minimize sumsq(w - y)\nsubject to\n  w >= 0\n  sum(w) == 1\n", """\
t.opt:8:3: error: linear equality constraints are not supported yet
    sum(w) == 1
    ^^^^^^^^^^^
this version handles bounds on the var (x >= lo, x <= hi, lo <= x <= hi) with param-only bounds; KKT-based constraints come in a later version"""),
    ('var-on-both-sides', V + "minimize sumsq(w - y)\nsubject to\n  y >= w - 1\n", """\
t.opt:7:3: error: linear inequality constraints are not supported yet
    y >= w - 1
    ^^^^^^^^^^
this version handles bounds on the var (x >= lo, x <= hi, lo <= x <= hi) with param-only bounds; KKT-based constraints come in a later version"""),
    ('general-constraint', V + "minimize sumsq(w - y)\nsubject to\n  sumsq(w) <= 1\n", """\
t.opt:7:3: error: general constraints are not supported yet
    sumsq(w) <= 1
    ^^^^^^^^^^^^^
this version handles bounds on the var (x >= lo, x <= hi, lo <= x <= hi) with param-only bounds; KKT-based constraints come in a later version"""),
    ('labelled-bound', V + "minimize sumsq(w - y)\nsubject to\n  pos: w >= 0\n", """\
t.opt:7:3: error: duals of bound constraints are not returned yet
    pos: w >= 0
    ^^^^^^^^^^^
drop the label 'pos:'; this version returns the var only"""),
    ('labelled-box', V + "minimize sumsq(w - y)\nsubject to\n  box: 0 <= w <= 1\n", """\
t.opt:7:3: error: duals of bound constraints are not returned yet
    box: 0 <= w <= 1
    ^^^^^^^^^^^^^^^^
drop the label 'box:'; this version returns the var only"""),
    ('two-vars-one-line', "problem p\ndim n\nparam y[n]\nvar x[n], u[n]\nminimize sumsq(x - y) + sumsq(u)\n", """\
t.opt:4:11: error: several vars in one problem are not supported yet
  var x[n], u[n]
            ^^^^
this version solves for one var; stack them into one vector var for now"""),
    ('two-vars-two-lines', "problem p\ndim n\nparam y[n]\nvar x[n]\nvar u[n]\nminimize sumsq(x - y) + sumsq(u)\n", """\
t.opt:5:5: error: several vars in one problem are not supported yet
  var u[n]
      ^^^^
this version solves for one var; stack them into one vector var for now"""),
    ('matrix-var', "problem p\ndim n\nparam Y[n, n]\nvar X[n, n]\nminimize sumsq(X - Y)\n", """\
t.opt:4:5: error: a var of rank 2 is not supported yet
  var X[n, n]
      ^^^^^^^
this version solves for a scalar or vector var; flatten the var into a vector"""),
    ('second-lower-bound', V + "minimize sumsq(w - y)\nsubject to\n  w >= 0\n  w >= y\n", """\
t.opt:8:3: error: a second lower bound on the var is not supported yet
    w >= y
    ^^^^^^
give one lower bound; combine them with maximum/minimum of params outside the problem"""),
    ('second-upper-bound', V + "minimize sumsq(w - y)\nsubject to\n  w <= 1\n  -1 <= w <= y\n", """\
t.opt:8:3: error: a second upper bound on the var is not supported yet
    -1 <= w <= y
    ^^^^^^^^^^^^
give one upper bound; combine them with maximum/minimum of params outside the problem"""),
    ('solver-ipm', S + "options\n  solver = \"ipm\"\n", """\
t.opt:7:3: error: solver "ipm" is not supported for this problem yet
    solver = "ipm"
    ^^^^^^^^^^^^^^
for a smooth problem use "auto" or "newton\""""),
    ('backward-gmres', S + "options\n  backward = \"gmres\"\n", """\
t.opt:7:3: error: backward "gmres" is not supported for this problem yet
    backward = "gmres"
    ^^^^^^^^^^^^^^^^^^
for a smooth problem use "auto" or "direct" or "cg\""""),
    ('root-backward-cg', K + "options\n  backward = \"cg\"\n", """\
t.opt:6:3: error: backward "cg" is not supported for this problem yet
    backward = "cg"
    ^^^^^^^^^^^^^^^
for a root problem use "auto" or "direct\""""),
    ('root-solver-pgd', K + "options\n  solver = \"pgd\"\n", """\
t.opt:6:3: error: solver "pgd" is not supported for this problem yet
    solver = "pgd"
    ^^^^^^^^^^^^^^
for a root problem use "auto" or "newton\""""),
    ('bounds-solver-newton', V + "minimize sumsq(w - y)\nsubject to\n  w >= 0\noptions\n  solver = \"newton\"\n", """\
t.opt:9:3: error: solver "newton" is not supported for this problem yet
    solver = "newton"
    ^^^^^^^^^^^^^^^^^
for a bounds problem use "auto" or "pgd" or "fista\""""),
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


# ---- messages that were once poor, pinned at what they now say ---------------------------

def poor(id_: str, src: str, expected: str, reason: str):
    """`reason` records what the message used to get wrong."""
    return pytest.param(src, expected, id=id_)


POOR = [
    poor("max-iter-overflows", S + "options\n  max_iter = 1e400\n", """\
t.opt:7:14: error: option max_iter must be a positive integer
    max_iter = 1e400
               ^^^^^
found inf""", "OverflowError from int(inf) in ir/check.py option_value, not an OptError"),
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
t.opt:7:8: error: the nonsmooth function abs is not supported yet
    w >= abs(y)
         ^^^^^^
this version needs bounds that are smooth in the params; compute this bound outside the problem \
and pass it as a param""",
         "the hint talks about a smooth objective although the function is in a bound"),
    poor("nonsmooth-root", K.replace("sin(E)", "abs(E)"), """\
t.opt:4:14: error: the nonsmooth function abs is not supported yet
  root E - e * abs(E) - M
               ^^^^^^
this version needs a smooth root equation (Newton uses its Jacobian); replace abs with a smooth \
function""",
         "the hint talks about an objective, proximal terms and bounds in a root problem"),
    poor("nonsmooth-fixed-point",
         "problem deq\ndim d\nparam W[d, d], bias[d]\nvar z[d]\nfixed_point z = relu(W @ z + bias)\n", """\
t.opt:5:17: error: the nonsmooth function relu is not supported yet
  fixed_point z = relu(W @ z + bias)
                  ^^^^^^^^^^^^^^^^^^
this version needs a smooth fixed-point map (Newton uses its Jacobian); replace relu with a smooth \
function such as softplus""",
         "the hint talks about an objective; the name is the internal 'relu/pos/neg'"),
    poor("fixed-point-solver-anderson",
         "problem deq\ndim d\nparam W[d, d], bias[d]\nvar z[d]\nfixed_point z = tanh(W @ z + bias)\n"
         "options\n  solver = \"anderson\"\n", """\
t.opt:7:3: error: solver "anderson" is not supported for this problem yet
    solver = "anderson"
    ^^^^^^^^^^^^^^^^^^^
for a fixed_point problem use "auto" or "newton\"""",
         "calls the user's fixed_point a 'root problem' (the IR's normalized form leaks)"),
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
    pytest.param(V + "minimize sumsq(w - y)\nsubject to\n  w >= 0\n  w >= y\n", (8, 3, 8, 9), "w >= y",
                 id="second-bound"),
    pytest.param("problem p\ndim n\nparam y[n]\nvar x[n], u[n]\nminimize sumsq(x - y) + sumsq(u)\n",
                 (4, 11, 4, 15), "u[n]", id="second-var"),
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
    # From LANGUAGE.md: compile or are refused with NotSupportedError in this version.
    "problem qp\ndim n, m, p\nparam Q[n, n] psd, c[n], G[m, n], h[m], A[p, n], b[p]\nvar z[n]\n"
    "minimize 0.5 * quad(z, Q) + dot(c, z)\nsubject to\n  ineq: G @ z <= h\n  eq:   A @ z == b\n",
    "problem sparsemax\ndim n\nparam v[n]\nvar x[n]\nminimize 0.5 * sumsq(x - v)\nsubject to\n"
    "  x >= 0\n  sum(x) == 1\n",
    "problem lasso\ndim n, d\nparam X[n, d], y[n], lam >= 0\nvar w[d]\n"
    "minimize 0.5 * sumsq(X @ w - y) + lam * norm1(w)\n",
    "problem deq\ndim d, k\nparam W[d, d], U[d, k], u[k], bias[d]\nvar z[d]\n"
    "fixed_point z = tanh(W @ z + U @ u + bias)\n",
    # Lets, axes, transposes, literals and a full options block.
    "problem mix\ndim n, k = 3\nparam A[n, k], S[k, k] symmetric, v[n], t in (0, 1]\nvar x[k]\n"
    "let r = A @ x - v\nminimize 0.5 * sumsq(r) + t * quad(x, S) + mean(exp(A' @ r), axis=0)"
    " + logsumexp(x) + sum(eye[k] @ x * ones[k])\nsubject to\n  -1 <= x <= 1\noptions\n"
    "  solver = \"fista\"\n  tol = 1e-8\n  max_iter = 200\n  backward = \"direct\"\n",
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
def test_unmutated_programs_compile_or_are_not_supported(src):
    try:
        optlang.compile_string(src, name="t.opt")
    except NotSupportedError:
        pass


@given(mutants())
def test_mutated_programs_raise_only_opt_error(src):
    try:
        optlang.compile_string(src, name="t.opt")
    except OptError as err:
        lines = str(err).splitlines()
        assert lines[0].startswith("t.opt:") and ": error: " in lines[0]
        assert len(lines) >= 3 and set(lines[2].strip()) == {"^"}
