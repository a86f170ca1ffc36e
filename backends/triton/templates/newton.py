# --- template newton.py: Newton's method with Armijo backtracking (optlang/solvers/newton.py) ---
# One program solves one problem instance with every iteration inside; the loops
# are while loops on the program's own scalars, so a converged instance stops.
#: Placeholders: __SIG__ / __ARGS__ (see common.py), __KERNEL_SIG__ (param pointers
#: and batch strides, N, the dims), __CONST_SIG__ (the constexpr tile sizes and
#: DTYPE), __LOAD_PARAMS__ (the statements loading this instance's param tiles),
#: and the solver's constants, taken from optlang/solvers/newton.py.
ARMIJO = tl.constexpr(__ARMIJO__)
MAX_HALVINGS = tl.constexpr(__MAX_HALVINGS__)


@triton.jit
def merit_flat(x, __SIG__):
    """The line search's merit: the objective, or |F|^2 / 2 for a root."""
    if MINIMIZE:
        merit = objective_flat(x, __ARGS__)
    else:
        F = residual_flat(x, __ARGS__)
        merit = 0.5 * tl.sum(F * F, axis=0)
    return merit


@triton.jit
def line_search(x, dx, merit0, slope, EPS: tl.constexpr, __SIG__):
    """Halve the step until the Armijo condition holds; the smallest step tried if it never does."""
    t = tl.full((), 1.0, DTYPE)
    # The slack of a few ulps of the merit lets a step that is exact up to
    # rounding through, instead of halving it away near the solution.
    slack = 8.0 * EPS * tl.abs(merit0)
    accepted = t < 0.0
    x_new = x
    halvings = 0
    while (halvings < MAX_HALVINGS) & (accepted == 0):
        trial = x + t * dx
        merit = merit_flat(trial, __ARGS__)
        ok = is_finite(merit) & (merit <= merit0 + ARMIJO * t * slope + slack)
        x_new = tl.where(ok, trial, x_new)
        accepted = ok
        t = tl.where(ok, t, 0.5 * t)
        halvings += 1
    return tl.where(accepted, x_new, x + t * dx)


@triton.jit
def newton_step(x, F, EPS: tl.constexpr, __SIG__):
    """One damped Newton step from x, where F = residual(x)."""
    J = jacobian(x, __ARGS__)
    dx, singular = gauss_solve(J, -F, VAR_BLOCK, DTYPE)
    if MINIMIZE:
        # A step that does not descend on f is replaced by the negative gradient.
        slope = tl.sum(F * dx, axis=0)
        dx = tl.where(slope < 0.0, dx, -F)
        merit0 = merit_flat(x, __ARGS__)
        slope = tl.sum(F * dx, axis=0)
    else:
        merit0 = 0.5 * tl.sum(F * F, axis=0)
        slope = -2.0 * merit0
    return line_search(x, dx, merit0, slope, EPS, __ARGS__)


@triton.jit
def newton_kernel(x_ptr, status_ptr, iterations_ptr, residual_ptr, tol_ptr, max_iter, __KERNEL_SIG__, EPS: tl.constexpr, __CONST_SIG__):  # noqa: E501
    """Solve residual(x) = 0 from x = 0 for the problem instance of this program."""
    pid = tl.program_id(0).to(tl.int64)
    __LOAD_PARAMS__
    tol = tl.load(tol_ptr)
    x = tl.zeros((VAR_BLOCK,), DTYPE)
    F = residual_flat(x, __ARGS__)
    scale = tl.max(tl.abs(F), axis=0)
    res = relative_residual(F, scale)
    done = res <= tol
    iterations = tl.zeros((), tl.int32)
    while (iterations < max_iter) & (done == 0):
        x = newton_step(x, F, EPS, __ARGS__)
        F = residual_flat(x, __ARGS__)
        iterations += 1
        res = relative_residual(F, scale)
        done = res <= tol
    store_var(x_ptr + pid * N, x, __ARGS__)
    tl.store(status_ptr + pid, tl.where(done, CONVERGED, MAX_ITER).to(tl.int8))
    tl.store(iterations_ptr + pid, iterations)
    tl.store(residual_ptr + pid, res)
