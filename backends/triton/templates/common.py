# --- template common.py: math helpers, the dense Jacobian and Gaussian elimination ----------
#: Lines starting "#:" are notes on the template, left out of generated modules.
#: Placeholders (filled by backends/triton/printer.py): __SIG__ declares, and __ARGS__
#: passes on, one problem instance's context: its param tiles, the var's size N, the
#: runtime dims n_*, the constexpr tile sizes BLOCK_* and VAR_BLOCK, and DTYPE.
INF = tl.constexpr(float("inf"))
# What a forward kernel stores per instance: the codes of optlang.solvers.result.STATUS.
CONVERGED = tl.constexpr(__CONVERGED__)
MAX_ITER = tl.constexpr(__MAX_ITER__)
FAILED = tl.constexpr(__FAILED__)
#: No NaN global: Triton checks that a global keeps its value between compilations,
#: and NaN never equals itself; INF - INF spells NaN where one is needed.


@triton.jit
def is_finite(a):
    """True where a is neither NaN nor infinite."""
    return (a == a) & (tl.abs(a) < INF)


@triton.jit
def eps_(DTYPE: tl.constexpr):
    """torch.finfo(DTYPE).eps."""
    if DTYPE == tl.float64:
        eps = tl.full((), 2.220446049250313e-16, DTYPE)
    else:
        eps = tl.full((), 1.1920928955078125e-07, DTYPE)
    return eps


@triton.jit
def sign_(a, DTYPE: tl.constexpr):
    """-1, 0 or 1 with a's sign, in DTYPE (torch.sign)."""
    return (a > 0).to(DTYPE) - (a < 0).to(DTYPE)


@triton.jit
def log1p_(z):
    """log(1 + z) accurate for small z (Goldberg's trick; no log1p in Triton's core language)."""
    u = 1.0 + z
    safe = tl.where(u == 1.0, 2.0, u)
    return tl.where(u == 1.0, z, tl.log(safe) * (z / (safe - 1.0)))


@triton.jit
def expm1_(z):
    """exp(z) - 1 accurate for small z (Kahan's trick)."""
    u = tl.exp(z)
    safe = tl.where((u == 1.0) | (u == 0.0), 2.0, u)
    out = (safe - 1.0) * (z / tl.log(safe))
    out = tl.where(u == 0.0, -1.0, out)
    return tl.where(u == 1.0, z, out)


@triton.jit
def tanh_(a, DTYPE: tl.constexpr):
    """tanh from expm1, accurate near 0 and saturating without overflow."""
    e = expm1_(-2.0 * tl.abs(a))
    return sign_(a, DTYPE) * (-e / (2.0 + e))


@triton.jit
def softplus_(a):
    """log(1 + exp(a)) without overflow (torch.logaddexp(a, 0))."""
    return tl.maximum(a, 0.0) + log1p_(tl.exp(-tl.abs(a)))


@triton.jit
def pow_(a, b):
    """a ** b for real a and b: exp(b log|a|), negated for odd integer powers of negative a."""
    mag = tl.exp(b * tl.log(tl.abs(a)))
    whole = tl.floor(b) == b
    odd = whole & ((b - 2.0 * tl.floor(0.5 * b)) == 1.0)
    # Nested wheres rather than &: the interpreter cannot & a scalar mask into a tile's.
    signed = tl.where(odd, -mag, mag)
    out = tl.where(a < 0.0, tl.where(whole, signed, INF - INF), mag)
    return tl.where(b == 0.0, 1.0, out)


@triton.jit
def logsumexp_(a, AXIS: tl.constexpr):
    """log(sum(exp(a))) over AXIS (None: all), shifted by the max; -inf lanes add nothing."""
    top = tl.max(a, axis=AXIS, keep_dims=True)
    top = tl.where(tl.abs(top) == INF, 0.0, top)  # all -inf, or an inf: no shift, as torch
    # Summing the kept unit dims drops them: the shift with the reduced shape.
    return tl.sum(top, axis=AXIS) + tl.log(tl.sum(tl.exp(a - top), axis=AXIS))


@triton.jit
def simplex_tau_(z, mask, DTYPE: tl.constexpr):
    """tau with sum(relu(z - tau)) == 1 over the lanes of mask, z a vector: Newton's method on
    phi(t) = sum(relu(z - t)) - 1 from t = max z - 1, no sort, the steps that
    backends/torch/support.py::_newton_tau takes (its docstring says why they reach tau).

    A step t + phi(t) / count, count the entries above t, until the count stops changing; at most
    one step more than the lanes, as there (only rounding against huge z could go on).
    """
    t = tl.max(tl.where(mask, z, -float("inf")), axis=0) - 1.0
    lanes = tl.sum(mask.to(DTYPE), axis=0)
    count = -1.0 + tl.zeros((), DTYPE)
    changed = lanes > 0.0
    steps = 0.0 + tl.zeros((), DTYPE)
    while changed:
        d = tl.where(mask, tl.maximum(z - t, 0.0), 0.0)
        new_count = tl.sum((d > 0.0).to(DTYPE), axis=0)
        changed = (new_count != count) & (steps <= lanes)
        t = tl.where(changed, t + (tl.sum(d, axis=0) - 1.0) / tl.maximum(new_count, 1.0), t)
        count = new_count
        steps += 1.0
    return t


@triton.jit
def simplex_tau_axis_(z, mask, AXIS: tl.constexpr, DTYPE: tl.constexpr):
    """simplex_tau_ along AXIS of a matrix z (lanes of mask), all rows at once: each row takes its
    own steps and keeps its tau once its count stops changing; the loop ends when no row changes."""
    inside = (tl.where(mask, 1.0, 0.0) + tl.zeros_like(z)) > 0.0  # the mask broadcast to z's tile
    t = tl.max(tl.where(inside, z, -float("inf")), axis=AXIS) - 1.0
    lanes = tl.sum(inside.to(DTYPE), axis=AXIS)
    count = tl.zeros_like(lanes) - 1.0
    changed = lanes > 0.0
    steps = 0.0
    going = tl.max(changed.to(tl.int32), axis=0) > 0
    while going:
        d = tl.where(inside, tl.maximum(z - tl.expand_dims(t, AXIS), 0.0), 0.0)
        new_count = tl.sum((d > 0.0).to(DTYPE), axis=AXIS)
        changed = (new_count != count) & (steps <= lanes)
        t = tl.where(changed, t + (tl.sum(d, axis=AXIS) - 1.0) / tl.maximum(new_count, 1.0), t)
        count = tl.where(changed, new_count, count)
        steps += 1.0
        going = tl.max(changed.to(tl.int32), axis=0) > 0
    return t


@triton.jit
def relative_residual(F, scale):
    """max|F| / max(1, scale), as optlang.solvers.result.relative_residual."""
    return tl.max(tl.abs(F), axis=0) / tl.maximum(scale, 1.0)


@triton.jit
def jacobian(x, __SIG__):
    """The dense Jacobian dF/dx as a [VAR_BLOCK, VAR_BLOCK] tile: column j is the JVP with e_j.

    Padded rows and columns hold the identity, so solves leave padded lanes at 0.
    """
    i = tl.arange(0, VAR_BLOCK)
    lanes = var_lanes(__ARGS__)
    J = tl.where((i[:, None] == i[None, :]) & (lanes[:, None] == 0), 1.0, 0.0).to(DTYPE)
    for j in range(0, N):
        e = (i == j).to(DTYPE)
        col = jvp_flat(x, e, __ARGS__)
        J = tl.where(i[None, :] == j, col[:, None], J)
    return J


@triton.jit
def gauss_solve(A, b, VAR_BLOCK: tl.constexpr, DTYPE: tl.constexpr):
    """Solve A x = b by Gaussian elimination with partial pivoting; returns (x, singular):
    gauss_solve_columns with b as its one column."""
    X, zero_pivot, smallest, largest = gauss_solve_columns(A, b[:, None], VAR_BLOCK, 1, DTYPE)
    x = tl.sum(X, axis=1)
    return x, zero_pivot | (tl.min(is_finite(x).to(tl.int32), axis=0) == 0)


@triton.jit
def gauss_solve_precise(A, b, N, VAR_BLOCK: tl.constexpr, DTYPE: tl.constexpr):
    """gauss_solve for the implicit function theorem's solves (optlang.solvers.linalg.solve's
    `precise`): rows scaled to a largest entry of 1 (the same solution), and a system singular to
    working precision flagged too, its smallest pivot at most N eps times the largest."""
    rows = tl.max(tl.abs(A), axis=1)
    scale = tl.where(rows > 0.0, 1.0 / tl.where(rows > 0.0, rows, 1.0), 1.0)
    A = A * scale[:, None]
    X, zero_pivot, smallest, largest = gauss_solve_columns(A, (b * scale)[:, None], VAR_BLOCK, 1, DTYPE)
    x = tl.sum(X, axis=1)
    imprecise = (smallest <= N * eps_(DTYPE) * largest) | (is_finite(largest) == 0)
    return x, zero_pivot | imprecise | (tl.min(is_finite(x).to(tl.int32), axis=0) == 0)


@triton.jit
def gauss_solve_columns(A, B, ROWS: tl.constexpr, COLS: tl.constexpr, DTYPE: tl.constexpr):
    """X with A X = B for the COLS columns of B at once, by Gaussian elimination with partial
    pivoting; returns (X, whether a pivot was zero, the smallest and the largest |pivot|).

    Rows and columns are picked with tl.where (no dynamic register indexing). The
    pivot is the first entry of largest magnitude, as LAPACK's getrf. Where a pivot
    is exactly zero (where getrf reports a singular matrix) its column is skipped
    and its unknown set to 0, a basic solution rather than torch's minimum-norm
    least-squares fallback; gauss_solve flags such systems, and non-finite results.
    """
    i = tl.arange(0, ROWS)
    zero_pivots = tl.zeros((ROWS,), tl.int32)
    smallest = tl.full((), float("inf"), DTYPE)
    largest = tl.zeros((), DTYPE)
    for k in range(0, ROWS):
        col = tl.sum(tl.where(i[None, :] == k, A, 0.0), axis=1)
        size = tl.where(i >= k, tl.abs(col), -1.0)
        p = tl.min(tl.where(size == tl.max(size, axis=0), i, ROWS), axis=0)
        row_k = tl.sum(tl.where(i[:, None] == k, A, 0.0), axis=0)
        row_p = tl.sum(tl.where(i[:, None] == p, A, 0.0), axis=0)
        b_k = tl.sum(tl.where(i[:, None] == k, B, 0.0), axis=0)
        b_p = tl.sum(tl.where(i[:, None] == p, B, 0.0), axis=0)
        A = tl.where(i[:, None] == k, row_p[None, :], tl.where(i[:, None] == p, row_k[None, :], A))
        B = tl.where(i[:, None] == k, b_p[None, :], tl.where(i[:, None] == p, b_k[None, :], B))
        pivot = tl.sum(tl.where(i == k, row_p, 0.0), axis=0)
        zero = pivot == 0.0
        smallest = tl.minimum(smallest, tl.abs(pivot))
        largest = tl.maximum(largest, tl.abs(pivot))
        col = tl.where(i == p, tl.sum(tl.where(i == k, col, 0.0), axis=0), col)
        factor = tl.where((i > k) & (zero == 0), col / tl.where(zero, 1.0, pivot), 0.0)
        A = A - factor[:, None] * row_p[None, :]
        B = B - factor[:, None] * b_p[None, :]
        zero_pivots = tl.where(i == k, zero.to(tl.int32), zero_pivots)
    X = tl.zeros((ROWS, COLS), DTYPE)
    for kk in range(0, ROWS):
        k = ROWS - 1 - kk
        row = tl.sum(tl.where(i[:, None] == k, A, 0.0), axis=0)
        done = tl.sum(tl.where(i[:, None] > k, row[:, None] * X, 0.0), axis=0)
        diag = tl.sum(tl.where(i == k, row, 0.0), axis=0)
        b_k = tl.sum(tl.where(i[:, None] == k, B, 0.0), axis=0)
        skip = tl.sum(tl.where(i == k, zero_pivots, 0), axis=0) != 0
        x_k = tl.where(skip, 0.0, (b_k - done) / tl.where(skip, 1.0, diag))
        X = tl.where(i[:, None] == k, x_k[None, :], X)
    return X, tl.max(zero_pivots, axis=0) != 0, smallest, largest
