# --- template fista.py: proximal gradient (FISTA or plain), backtracking, semismooth Newton polish ---
# Mirrors optlang/solvers/pgd.py step for step: the start prox(0, 0), the backtracking trial
# prox(y - g / L, 1 / L), the polish trial prox(x + dx, 0); ACCELERATE (a constexpr) is
# FISTA's momentum, off for solver "pgd" (t_next = 1, so y = x). One program solves one
# problem instance with every iteration inside. Where pgd.py couples the batch (it
# polishes once every element is below the threshold, and sets the next threshold from
# the batch's worst residual), each instance here decides from its own residual; the
# solution is the same fixed point, the iteration counts may differ.
#: Placeholders: as in newton.py.
POLISH_AT = tl.constexpr(__POLISH_AT__)
POLISH_STEPS = tl.constexpr(__POLISH_STEPS__)
MAX_BACKTRACK = tl.constexpr(__MAX_BACKTRACK__)


@triton.jit
def backtrack(y, g, fy, L, EPS: tl.constexpr, __SIG__):
    """Double L until the quadratic upper bound holds at the proximal gradient step from y."""
    slack = 8.0 * EPS * tl.abs(fy)
    accepted = L < 0.0
    x_new = y
    tries = 0
    while (tries < MAX_BACKTRACK) & (accepted == 0):
        trial = prox_flat(y - g / L, 1.0 / L, __ARGS__)
        d = trial - y
        bound = fy + tl.sum(g * d, axis=0) + 0.5 * L * tl.sum(d * d, axis=0)
        ok = objective_flat(trial, __ARGS__) <= bound + slack
        x_new = tl.where(ok, trial, x_new)
        accepted = ok
        L = tl.where(ok, L, 2.0 * L)
        tries += 1
    return x_new, L


@triton.jit
def polish(x, res, scale, tol, iterations, __SIG__):
    """Semismooth Newton steps on the fixed point, each kept only if it lowers the residual."""
    steps = 0
    going = res > tol
    while (steps < POLISH_STEPS) & going:
        F = residual_flat(x, __ARGS__)
        J = jacobian(x, __ARGS__)
        dx, singular = gauss_solve(J, -F, VAR_BLOCK, DTYPE)
        trial = prox_flat(x + dx, tl.zeros((), DTYPE), __ARGS__)
        F_trial = residual_flat(trial, __ARGS__)
        res_trial = relative_residual(F_trial, scale)
        better = is_finite(res_trial) & (res_trial < res)
        x = tl.where(better, trial, x)
        res = tl.where(better, res_trial, res)
        iterations += better.to(tl.int32)
        going = better & (res > tol)
        steps += 1
    return x, res, iterations


@triton.jit
def fista_kernel(x_ptr, status_ptr, iterations_ptr, residual_ptr, tol_ptr, max_iter, __KERNEL_SIG__, EPS: tl.constexpr, ACCELERATE: tl.constexpr, __CONST_SIG__):  # noqa: E501
    """Minimize f + r (r by its prox) from the projection of 0, for the problem instance of this program."""
    pid = tl.program_id(0).to(tl.int64)
    __LOAD_PARAMS__
    tol = tl.load(tol_ptr)
    x = prox_flat(tl.zeros((VAR_BLOCK,), DTYPE), tl.zeros((), DTYPE), __ARGS__)
    F = residual_flat(x, __ARGS__)
    scale = tl.max(tl.abs(F), axis=0)
    res = relative_residual(F, scale)
    done = res <= tol
    iterations = tl.zeros((), tl.int32)
    L = tl.full((), 1.0, DTYPE)
    t = tl.full((), 1.0, DTYPE)
    y = x
    polish_at = tl.full((), POLISH_AT, DTYPE)
    steps = 0
    while (steps < max_iter) & (done == 0):
        g = gradient_flat(y, __ARGS__)
        fy = objective_flat(y, __ARGS__)
        x_new, L = backtrack(y, g, fy, L, EPS, __ARGS__)
        # Restart the momentum where it points uphill (gradient restart).
        t = tl.where(tl.sum(g * (x_new - x), axis=0) > 0.0, 1.0, t)
        if ACCELERATE:
            t_next = 0.5 * (1.0 + tl.sqrt(1.0 + 4.0 * t * t))
        else:
            t_next = tl.full((), 1.0, DTYPE)
        y = x_new + ((t - 1.0) / t_next) * (x_new - x)
        x = x_new
        t = t_next
        L = 0.9 * L  # let the step grow back
        steps += 1
        iterations += 1
        F = residual_flat(x, __ARGS__)
        res = relative_residual(F, scale)
        done = res <= tol
        if (res <= polish_at) | done:
            x, res, iterations = polish(x, res, scale, tol, iterations, __ARGS__)
            done = res <= tol
            y = x
            t = tl.full((), 1.0, DTYPE)
            # Polish again only after FISTA has made a decade of progress.
            polish_at = tl.where(done, 0.0, 0.1 * res)
    store_var(x_ptr + pid * N, x, __ARGS__)
    tl.store(status_ptr + pid, tl.where(done, CONVERGED, MAX_ITER).to(tl.int8))
    tl.store(iterations_ptr + pid, iterations)
    tl.store(residual_ptr + pid, res)
