# --- template anderson.py: Anderson acceleration for fixed points z = g(z) (optlang/solvers/anderson.py) ---
# Mirrors anderson.py step for step, one program per problem instance: the residual of the
# map is f = g(x) - x with g(x) = x - residual(x); each iteration takes the plain step
# x + beta f and, once there is history, the Anderson candidate from the last MEMORY
# differences dX, dF (rows of [MEMORY_BLOCK, VAR_BLOCK] tiles, the newest in row MEMORY - 1,
# padded rows 0); the candidate is kept only where its residual is finite and smaller than
# the plain step's, else the plain step is taken and the history restarts from it. An
# instance whose iterate turns non-finite stops at its last finite one with status FAILED.
#: Placeholders: as in newton.py, plus the defaults of anderson.anderson: __MEMORY__ (and
#: its power of two __MEMORY_BLOCK__), __MIXING__ (beta), __REGULARIZATION__.
MEMORY = tl.constexpr(__MEMORY__)
MEMORY_BLOCK = tl.constexpr(__MEMORY_BLOCK__)
MIXING = tl.constexpr(__MIXING__)
REGULARIZATION = tl.constexpr(__REGULARIZATION__)


@triton.jit
def all_finite(v):
    """True where every entry of the vector v is finite."""
    return tl.min(is_finite(v).to(tl.int32), axis=0) == 1


@triton.jit
def map_residual(x, __SIG__):
    """f = g(x) - x with g(x) = x - residual(x), rounded as anderson.py computes it."""
    g = x - residual_flat(x, __ARGS__)
    return g - x


@triton.jit
def coefficients(dF, f, count, DTYPE: tl.constexpr):
    """gamma minimizing |f - dF^T gamma|^2 + reg |D gamma|^2 (D the column norms), as anderson._coefficients.

    Normal equations on the Gram matrix scaled to unit diagonal; rows outside the
    history (and the padded ones) get an identity row and a zero right-hand side.
    """
    r = tl.arange(0, MEMORY_BLOCK)
    valid = (r < MEMORY) & (r >= MEMORY - count)
    norms = tl.sqrt(tl.sum(dF * dF, axis=1))
    d = tl.where(valid & (norms > 0.0), norms, 1.0)
    Q = dF / d[:, None]
    gram = tl.sum(Q[:, None, :] * Q[None, :, :], axis=2)
    eye = (r[:, None] == r[None, :]).to(DTYPE)
    gram = tl.where(valid[:, None] & valid[None, :], gram, eye) + REGULARIZATION * eye
    rhs = tl.where(valid, tl.sum(Q * f[None, :], axis=1), 0.0)
    y, singular = gauss_solve(gram, rhs, MEMORY_BLOCK, DTYPE)
    return y / d


@triton.jit
def push(dX, dF, count, dx, df, step, accelerated):
    """Append the newest differences where `step`; after a plain step, restart the history from it."""
    r = tl.arange(0, MEMORY_BLOCK)
    restart = step & (accelerated == 0)
    # Row i takes row i + 1 (a one-hot contraction: exact), the last row the newest differences.
    shift = (r[None, :] == r[:, None] + 1) & (r[:, None] < MEMORY - 1)
    rolled_X = tl.sum(tl.where(shift[:, :, None], dX[None, :, :], 0.0), axis=1)
    rolled_F = tl.sum(tl.where(shift[:, :, None], dF[None, :, :], 0.0), axis=1)
    rolled_X = tl.where(restart, 0.0, rolled_X)
    rolled_F = tl.where(restart, 0.0, rolled_F)
    rolled_X = tl.where(r[:, None] == MEMORY - 1, dx[None, :], rolled_X)
    rolled_F = tl.where(r[:, None] == MEMORY - 1, df[None, :], rolled_F)
    count_new = tl.where(restart, 1, tl.minimum(count + 1, MEMORY))
    return tl.where(step, rolled_X, dX), tl.where(step, rolled_F, dF), tl.where(step, count_new, count)


@triton.jit
def anderson_kernel(x_ptr, status_ptr, iterations_ptr, residual_ptr, tol_ptr, max_iter, __KERNEL_SIG__, __CONST_SIG__):  # noqa: E501
    """Solve x = g(x) from x = 0 for the problem instance of this program."""
    pid = tl.program_id(0).to(tl.int64)
    __LOAD_PARAMS__
    tol = tl.load(tol_ptr)
    x = tl.zeros((VAR_BLOCK,), DTYPE)
    f = map_residual(x, __ARGS__)
    scale = tl.max(tl.abs(f), axis=0)
    res = relative_residual(f, scale)
    failed = (is_finite(res) == 0) | (all_finite(x) == 0)
    done = failed | (res <= tol)
    iterations = tl.zeros((), tl.int32)
    dX = tl.zeros((MEMORY_BLOCK, VAR_BLOCK), DTYPE)
    dF = tl.zeros((MEMORY_BLOCK, VAR_BLOCK), DTYPE)
    count = tl.zeros((), tl.int32)  # valid history rows, the newest last
    while (iterations < max_iter) & (done == 0):
        x_plain = x + MIXING * f
        f_plain = map_residual(x_plain, __ARGS__)
        x_new = x_plain
        f_new = f_plain
        accelerated = count < 0
        if count > 0:
            gamma = coefficients(dF, f, count, DTYPE)
            x_aa = x_plain - tl.sum((dX + MIXING * dF) * gamma[:, None], axis=0)
            f_aa = map_residual(x_aa, __ARGS__)
            norm_aa = tl.sqrt(tl.sum(f_aa * f_aa, axis=0))
            norm_plain = tl.sqrt(tl.sum(f_plain * f_plain, axis=0))
            # A NaN plain norm compares False, so such an instance goes on to fail below.
            accelerated = is_finite(norm_aa) & all_finite(x_aa) & (norm_aa < norm_plain)
            x_new = tl.where(accelerated, x_aa, x_plain)
            f_new = tl.where(accelerated, f_aa, f_plain)
        ok = all_finite(f_new) & all_finite(x_new)
        dX, dF, count = push(dX, dF, count, x_new - x, f_new - f, ok, accelerated)
        x = tl.where(ok, x_new, x)
        f = tl.where(ok, f_new, f)
        iterations += 1
        res = tl.where(ok, relative_residual(f, scale), res)
        failed = failed | (ok == 0)
        done = failed | (res <= tol)
    store_var(x_ptr + pid * N, x, __ARGS__)
    status = tl.where(failed, FAILED, tl.where(done, CONVERGED, MAX_ITER))
    tl.store(status_ptr + pid, status.to(tl.int8))
    tl.store(iterations_ptr + pid, iterations)
    tl.store(residual_ptr + pid, res)
