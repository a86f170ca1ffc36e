# --- template ops.py: the shared solvers' array interface, spelled in tl (optlang/solvers/ops.py) ---
# The solvers written once for both backends call these names; here one program holds one
# instance, so a per-instance scalar is a 0-d tile, a vector [VAR_BLOCK] and a matrix
# [VAR_BLOCK, VAR_BLOCK] whose padded rows and columns hold the identity.
#: Placeholders: __SIG__ / __ARGS__ as in common.py.


@triton.jit
def any_(mask):
    """The branch or loop condition of one instance: its own mask."""
    return mask


@triton.jit
def keep_going(going, __SIG__):
    """The outer loop's condition (no deadline inside a kernel)."""
    return going


@triton.jit
def full(value: tl.constexpr, __SIG__):
    return tl.full((), value, DTYPE)


@triton.jit
def zero_count(__SIG__):
    return tl.zeros((), tl.int32)


@triton.jit
def where(mask, a, b):
    return tl.where(mask, a, b)


@triton.jit
def where_matrix(mask, a, b):
    return tl.where(mask, a, b)


@triton.jit
def all_finite(v):
    return tl.min(is_finite(v).to(tl.int32), axis=0) > 0


@triton.jit
def abs_(a):
    return tl.abs(a)


@triton.jit
def at_least(a, floor):
    return tl.maximum(a, floor)


@triton.jit
def machine_eps(__SIG__):
    """torch.finfo(DTYPE).eps."""
    return eps_(DTYPE)


@triton.jit
def tiny(__SIG__):
    """torch.finfo(DTYPE).tiny, the smallest normal number."""
    if DTYPE == tl.float64:
        value = tl.full((), 2.2250738585072014e-308, DTYPE)
    else:
        value = tl.full((), 1.1754943508222875e-38, DTYPE)
    return value


@triton.jit
def free_set(x, __SIG__):
    """The elementwise prox's free set at x, a 0/1 mask (a simplex's projection has no kernel here)."""
    return free_flat(x, __ARGS__)


@triton.jit
def free_projection(x, D, v, __SIG__):
    return D * v


@triton.jit
def dot(a, b):
    return tl.sum(a * b, axis=0)


@triton.jit
def amax_abs(v):
    return tl.max(tl.abs(v), axis=0)


@triton.jit
def total(v):
    return tl.sum(v, axis=0)


@triton.jit
def least(v):
    """min v (a padded lane must hold a value that cannot be the least: inf)."""
    return tl.min(v, axis=0)


@triton.jit
def maximum(a, b):
    return tl.maximum(a, b)


@triton.jit
def minimum(a, b):
    return tl.minimum(a, b)


@triton.jit
def identity(A, __SIG__):
    i = tl.arange(0, VAR_BLOCK)
    return (i[:, None] == i[None, :]).to(DTYPE)


@triton.jit
def transpose(A):
    return tl.trans(A)


@triton.jit
def diagonal(A, __SIG__):
    i = tl.arange(0, VAR_BLOCK)
    return tl.sum(tl.where(i[:, None] == i[None, :], A, 0.0), axis=1)


@triton.jit
def add_diagonal(A, s, __SIG__):
    """A + s I (the padded diagonal too: its unknowns stay 0, their right-hand sides being 0)."""
    i = tl.arange(0, VAR_BLOCK)
    return tl.where(i[:, None] == i[None, :], A + s, A)


@triton.jit
def solve(A, b, __SIG__):
    return gauss_solve(A, b, VAR_BLOCK, DTYPE)


@triton.jit
def cholesky(A, __SIG__):
    """(L, ok): the lower Cholesky factor of A (right-looking, a column per step), and whether every
    pivot was positive and finite (torch.linalg.cholesky_ex's info == 0)."""
    i = tl.arange(0, VAR_BLOCK)
    L = tl.zeros((VAR_BLOCK, VAR_BLOCK), DTYPE)
    ok = tl.zeros((), tl.int32) == 0
    for k in range(0, VAR_BLOCK):
        col = tl.sum(tl.where(i[None, :] == k, A, 0.0), axis=1)
        pivot = tl.sum(tl.where(i == k, col, 0.0), axis=0)
        good = (pivot > 0.0) & is_finite(pivot)
        ok = ok & good
        root = tl.sqrt(tl.where(good, pivot, 1.0))
        l_k = tl.where(i >= k, col / root, 0.0)
        L = tl.where(i[None, :] == k, l_k[:, None], L)
        A = A - l_k[:, None] * l_k[None, :]
    return L, ok


@triton.jit
def cholesky_solve(L, b, __SIG__):
    """x with L L^T x = b: forward substitution, then back substitution on L^T."""
    i = tl.arange(0, VAR_BLOCK)
    y = tl.zeros((VAR_BLOCK,), DTYPE)
    for k in range(0, VAR_BLOCK):
        row = tl.sum(tl.where(i[:, None] == k, L, 0.0), axis=0)
        known = tl.sum(tl.where(i < k, row * y, 0.0), axis=0)
        b_k = tl.sum(tl.where(i == k, b, 0.0), axis=0)
        y = tl.where(i == k, (b_k - known) / tl.sum(tl.where(i == k, row, 0.0), axis=0), y)
    x = tl.zeros((VAR_BLOCK,), DTYPE)
    for kk in range(0, VAR_BLOCK):
        k = VAR_BLOCK - 1 - kk
        col = tl.sum(tl.where(i[None, :] == k, L, 0.0), axis=1)
        known = tl.sum(tl.where(i > k, col * x, 0.0), axis=0)
        y_k = tl.sum(tl.where(i == k, y, 0.0), axis=0)
        x = tl.where(i == k, (y_k - known) / tl.sum(tl.where(i == k, col, 0.0), axis=0), x)
    return x


@triton.jit
def finish(results, __SIG__):
    """The solve's results (ops.compact, which drops stopped instances from a PyTorch batch, has no
    counterpart here: this program's instance is the whole batch)."""
    return results


@triton.jit
def sqrt_(a):
    return tl.sqrt(a)


@triton.jit
def at_most(a, cap):
    return tl.minimum(a, cap)


@triton.jit
def history(x, __SIG__):
    """A history: [MEMORY_BLOCK, VAR_BLOCK], MEMORY rows of differences, the newest in row MEMORY - 1."""
    return tl.zeros((MEMORY_BLOCK, VAR_BLOCK), DTYPE)


@triton.jit
def history_rows(count, __SIG__):
    r = tl.arange(0, MEMORY_BLOCK)
    return (r < MEMORY) & (r >= MEMORY - count)


@triton.jit
def row_norms(H):
    return tl.sqrt(tl.sum(H * H, axis=1))


@triton.jit
def divide_rows(H, d):
    return H / d[:, None]


@triton.jit
def row_dots(H, v):
    return tl.sum(H * v[None, :], axis=1)


@triton.jit
def combine(H, gamma):
    return tl.sum(H * gamma[:, None], axis=0)


@triton.jit
def gram(Q, valid, regularization, __SIG__):
    r = tl.arange(0, MEMORY_BLOCK)
    eye = (r[:, None] == r[None, :]).to(DTYPE)
    both = valid[:, None] & valid[None, :]
    return tl.where(both, tl.sum(Q[:, None, :] * Q[None, :, :], axis=2), eye) + regularization * eye


@triton.jit
def solve_history(A, b, __SIG__):
    return gauss_solve(A, b, MEMORY_BLOCK, DTYPE)


@triton.jit
def roll_in(H, v, restart):
    """Row i takes row i + 1 (a one-hot contraction: exact), the last row v; where restart, v alone."""
    r = tl.arange(0, MEMORY_BLOCK)
    shift = (r[None, :] == r[:, None] + 1) & (r[:, None] < MEMORY - 1)
    rolled = tl.sum(tl.where(shift[:, :, None], H[None, :, :], 0.0), axis=1)
    rolled = tl.where(restart, 0.0, rolled)
    return tl.where(r[:, None] == MEMORY - 1, v[None, :], rolled)


@triton.jit
def batch_all(mask):
    """The instance's own mask (a PyTorch batch waits for every element)."""
    return mask


@triton.jit
def batch_any(mask):
    return mask


@triton.jit
def batch_max(a):
    return a


@triton.jit
def times(A, v):
    return tl.sum(A * v[None, :], axis=1)


@triton.jit
def transpose_times(A, v):
    return tl.sum(A * v[:, None], axis=0)


@triton.jit
def row_amax_abs(A):
    return tl.max(tl.abs(A), axis=1)


@triton.jit
def rows_times(d, A):
    return d[:, None] * A


@triton.jit
def free_system(H, D, __SIG__):
    """D H D + (I - D), D a 0/1 mask: H on the free set, the identity off it and on the padding."""
    i = tl.arange(0, VAR_BLOCK)
    d = tl.where(var_lanes(__ARGS__), D, 0.0)
    return d[:, None] * H * d[None, :] + tl.where(i[:, None] == i[None, :], 1.0 - d[:, None], 0.0)


@triton.jit
def all_finite_matrix(A):
    return tl.min(tl.min(is_finite(A).to(tl.int32), axis=1), axis=0) > 0


@triton.jit
def amax_abs_matrix(A):
    return tl.max(tl.max(tl.abs(A), axis=1), axis=0)


@triton.jit
def power_start(A, x, __SIG__):
    """1 + 0.01 i on the var's lanes, 0 on the padding."""
    i = tl.arange(0, VAR_BLOCK)
    return tl.where(var_lanes(__ARGS__), 1.0 + 0.01 * i.to(DTYPE), 0.0)


@triton.jit
def hessian(x, __SIG__):
    """The dense Hessian of f at x as a [VAR_BLOCK, VAR_BLOCK] tile: column j is the HVP with e_j.
    Padded rows and columns are 0 (they must not add an eigenvalue)."""
    i = tl.arange(0, VAR_BLOCK)
    H = tl.zeros((VAR_BLOCK, VAR_BLOCK), DTYPE)
    for j in range(0, N):
        e = (i == j).to(DTYPE)
        col = hvp_flat(x, e, __ARGS__)
        H = tl.where(i[None, :] == j, col[:, None], H)
    return H


@triton.jit
def objective_gradient_flat(x, __SIG__):
    """(f, grad f) at x: both inlined into one kernel, whose compiler computes their common terms once
    (the PyTorch backend calls the fused generated function instead)."""
    return objective_flat(x, __ARGS__), gradient_flat(x, __ARGS__)
