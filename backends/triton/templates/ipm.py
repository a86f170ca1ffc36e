# --- template ipm.py: the KKT operations of optlang/solvers/ipm.py on tiles, and the kernels around it ---
# ipm.py's @kernel functions are the interior point (printed above this template); here one program
# runs them on one problem instance, and these functions spell the KKT-specific operations they call
# (their PyTorch spellings end optlang/solvers/ops.py). Tiles, each as small as its block: x and grad
# are [X_BLOCK] tiles (lanes 0 .. NV); g, s, lam [I_BLOCK] (0 .. NI); h, nu [E_BLOCK] (0 .. NE); all
# padded with 0. Jg is [I_BLOCK, X_BLOCK] and Jh [E_BLOCK, X_BLOCK] (rows the constraints, columns the
# vars), H and Kx = H + Jg' diag(lam / s) Jg + d I [X_BLOCK, X_BLOCK], padded with the identity where
# solved. The reduced system [[Kx, Jh'], [Jh, -d I]] is solved through its Schur complement S = Jh
# Kx^-1 Jh' + d I on the equality duals, as on PyTorch, by Gaussian elimination where PyTorch takes
# Cholesky, so no tile spans x and nu: at OptNet's n = 20 with 20/5 the largest is 32 x 32, at n = 64
# with 32/8 64 x 64, where one tile of the whole state (vars and duals, VAR_BLOCK) is 64 x 64 and
# 128 x 128. The problem's functions take and give flat [VAR_BLOCK] tiles (the kkt adapters): `take`
# and `place` move vectors between the two layouts. The forward kernel stores the flat state
# (x, lam, nu), the status, the iteration count and the residual.
#: Placeholders: as in backward.py, plus __NV__, __NI__, __NE__ (the printed sizes of the var, the
#: inequality rows and the equality rows; X_BLOCK, I_BLOCK and E_BLOCK are constexprs), __DELTA_DOUBLE__ and
#: __DELTA_SINGLE__ (the regularization eps^(2/3) in float64 and float32), and the constants of runtime/kkt.py and result.py
#: (__WEAK__, __BALANCE__, the status codes).
INFEASIBLE = tl.constexpr(__INFEASIBLE__)
UNBOUNDED = tl.constexpr(__UNBOUNDED__)
WEAK = tl.constexpr(__WEAK__)
BALANCE = tl.constexpr(__BALANCE__)


@triton.jit
def take(v, off, count, IN: tl.constexpr, OUT: tl.constexpr):
    """out[i] = v[off + i] for i < count, else 0: a block of a tile of IN lanes as a tile of OUT
    lanes (a one-hot contraction: exact)."""
    i = tl.arange(0, OUT)
    j = tl.arange(0, IN)
    return tl.sum(tl.where((j[None, :] == off + i[:, None]) & (i[:, None] < count), v[None, :], 0.0), axis=1)


@triton.jit
def place(v, off, count, IN: tl.constexpr, OUT: tl.constexpr):
    """out[off + i] = v[i] for i < count, else 0: lanes of a tile of IN lanes put into one of OUT lanes."""
    i = tl.arange(0, IN)
    j = tl.arange(0, OUT)
    return tl.sum(tl.where((j[None, :] == off + i[:, None]) & (i[:, None] < count), v[:, None], 0.0), axis=0)


@triton.jit
def flat(x, lam, nu, __SIG__):
    """The flat state (x, lam, nu) as one [VAR_BLOCK] tile, what the problem's functions take."""
    out = place(x, 0, __NV__, X_BLOCK, VAR_BLOCK) + place(lam, __NV__, __NI__, I_BLOCK, VAR_BLOCK)
    return out + place(nu, __NV__ + __NI__, __NE__, E_BLOCK, VAR_BLOCK)


@triton.jit
def finite_vec(v):
    return tl.min(is_finite(v).to(tl.int32), axis=0) == 1


@triton.jit
def finite_mat(A):
    return tl.min(tl.min(is_finite(A).to(tl.int32), axis=1), axis=0) == 1


@triton.jit
def evaluate(x, Jg, Jh, __SIG__):
    """f, grad f, g, Jg, h, Jh at x; the Jacobians given (affine constraints) or rebuilt."""
    xf = place(x, 0, __NV__, X_BLOCK, VAR_BLOCK)
    f = objective_flat(xf, __ARGS__)
    grad = take(gradient_flat(xf, __ARGS__), 0, __NV__, VAR_BLOCK, X_BLOCK)
    g = take(ineq_flat(xf, __ARGS__), 0, __NI__, VAR_BLOCK, I_BLOCK)
    h = take(eq_flat(xf, __ARGS__), 0, __NE__, VAR_BLOCK, E_BLOCK)
    if NONLINEAR:
        Jg, Jh = constraint_jacobians(x, __ARGS__)
    return f, grad, g, Jg, h, Jh


@triton.jit
def constraint_jacobians(x, __SIG__):
    """Jg and Jh at x, from NV JVPs each."""
    xf = place(x, 0, __NV__, X_BLOCK, VAR_BLOCK)
    r = tl.arange(0, VAR_BLOCK)
    c = tl.arange(0, X_BLOCK)
    Jg = tl.zeros((I_BLOCK, X_BLOCK), DTYPE)
    Jh = tl.zeros((E_BLOCK, X_BLOCK), DTYPE)
    for j in range(0, __NV__):
        e = (r == j).to(DTYPE)
        col_g = take(jvp_ineq_flat(xf, e, __ARGS__), 0, __NI__, VAR_BLOCK, I_BLOCK)
        col_h = take(jvp_eq_flat(xf, e, __ARGS__), 0, __NE__, VAR_BLOCK, E_BLOCK)
        Jg = tl.where(c[None, :] == j, col_g[:, None], Jg)
        Jh = tl.where(c[None, :] == j, col_h[:, None], Jh)
    return Jg, Jh


@triton.jit
def lagrangian_hessian(x, lam, nu, __SIG__):
    """The Lagrangian's Hessian in the vars at (x, lam, nu), from NV Hessian-vector products."""
    r = tl.arange(0, VAR_BLOCK)
    c = tl.arange(0, X_BLOCK)
    z = flat(x, lam, nu, __ARGS__)
    H = tl.zeros((X_BLOCK, X_BLOCK), DTYPE)
    for j in range(0, __NV__):
        e = (r == j).to(DTYPE)
        col = take(hvp_lagrangian_flat(z, e, __ARGS__), 0, __NV__, VAR_BLOCK, X_BLOCK)
        H = tl.where(c[None, :] == j, col[:, None], H)
    return H


@triton.jit
def x_system(H, Jg, s, lam, delta, __SIG__):
    """Kx = H + Jg' diag(lam / s) Jg + d I, the x block of the reduced system; identity on the padding."""
    ri = tl.arange(0, I_BLOCK)
    r = tl.arange(0, X_BLOCK)
    w = lam / tl.where(ri < __NI__, s, 1.0)
    K = H
    for i in range(0, __NI__):
        row = tl.sum(tl.where(ri[:, None] == i, Jg, 0.0), axis=0)
        w_i = tl.sum(tl.where(ri == i, w, 0.0), axis=0)
        K += row[:, None] * (w_i * row)[None, :]
    return K + tl.where(r[:, None] == r[None, :], tl.where(r < __NV__, delta, 1.0)[:, None], 0.0)


@triton.jit
def schur(Kx, Jh, delta, __SIG__):
    """(Z, S): Z = Kx^-1 Jh' [X_BLOCK, E_BLOCK] and the Schur complement S = Jh Z + d I of [[Kx, Jh'],
    [Jh, -d I]] on the equality duals [E_BLOCK, E_BLOCK], identity on the padding."""
    re = tl.arange(0, E_BLOCK)
    Z, zero_pivot, smallest, largest = gauss_solve_columns(Kx, tl.trans(Jh), X_BLOCK, E_BLOCK, DTYPE)
    S = tl.sum(Jh[:, :, None] * Z[None, :, :], axis=1)
    return Z, S + tl.where(re[:, None] == re[None, :], tl.where(re < __NE__, delta, 1.0)[:, None], 0.0)


@triton.jit
def ineq_only(v, fill, __SIG__):
    """v on the inequality rows' lanes, fill on the padding."""
    return tl.where(tl.arange(0, I_BLOCK) < __NI__, v, fill)


@triton.jit
def ineq_count(__SIG__):
    """The number of inequality rows, at least 1 (mu's denominator)."""
    return tl.maximum(tl.zeros((), DTYPE) + __NI__, 1.0)


@triton.jit
def regularization(__SIG__):
    """eps^(2/3) of DTYPE, the reduced system's d (ops.eliminate)."""
    if DTYPE == tl.float64:
        delta = tl.full((), __DELTA_DOUBLE__, DTYPE)
    else:
        delta = tl.full((), __DELTA_SINGLE__, DTYPE)
    return delta


@triton.jit
def system_times(K, v, __SIG__):
    """K v for the x block's system (its padding the identity, v's padding 0)."""
    return times(K, v)


@triton.jit
def eliminate(H, Jg, Jh, s, lam, going, __SIG__):
    """(Kx, Z, S) of ops.eliminate: the x block, Z = Kx^-1 Jh' (one elimination of Kx, with Jh' as a
    block right-hand side) and the Schur complement S; reduced_solve eliminates Kx and S again for each
    right-hand side (a tile holds no factor). A finished instance has left the loop."""
    delta = regularization(__ARGS__)
    Kx = x_system(H, Jg, s, lam, delta, __ARGS__)
    Z, S = schur(Kx, Jh, delta, __ARGS__)
    return Kx, Z, S


@triton.jit
def reduced_solve(Kx, Z, S, Jh, r1, r_h, __SIG__):
    """(dx, dnu) with [[Kx, Jh'], [Jh, -d I]] (dx, dnu) = (r1, -r_h): dnu = S^-1 (Jh y + r_h) and
    dx = y - Z dnu with y = Kx^-1 r1."""
    r = tl.arange(0, X_BLOCK)
    y, singular = gauss_solve(Kx, r1, X_BLOCK, DTYPE)
    dnu, singular_s = gauss_solve(S, times(Jh, y) + r_h, E_BLOCK, DTYPE)
    return tl.where(r < __NV__, y - times(Z, dnu), 0.0), dnu


@triton.jit
def finite_point(x, s, lam, nu, f, grad, g, Jg, h, Jh, __SIG__):
    """Whether the point is finite (constant Jacobians were checked at the start: vectors only)."""
    ok = finite_vec(x) & finite_vec(s) & finite_vec(lam) & finite_vec(nu) & is_finite(f)
    ok = ok & finite_vec(grad) & finite_vec(g) & finite_vec(h)
    if NONLINEAR:
        ok = ok & finite_mat(Jg) & finite_mat(Jh)
    return ok


@triton.jit
def ipm_kernel(x_ptr, status_ptr, iterations_ptr, residual_ptr, tol_ptr, max_iter, __KERNEL_SIG__, __CONST_SIG__):  # noqa: E501
    """Solve the KKT conditions from x = 0 (lam = 1, nu = 0) for this program's instance; store the flat
    state (x, lam, nu)."""
    pid = tl.program_id(0).to(tl.int64)
    __LOAD_PARAMS__
    tol = tl.load(tol_ptr)
    lam = (tl.arange(0, I_BLOCK) < __NI__).to(DTYPE)
    x, lam, nu, status, iterations, res = ipm_solve(tl.zeros((X_BLOCK,), DTYPE), lam, tl.zeros((E_BLOCK,), DTYPE), 1.0, tol, max_iter, __ARGS__)  # noqa: E501
    store_var(x_ptr + pid * N, flat(x, lam, nu, __ARGS__), __ARGS__)
    tl.store(status_ptr + pid, status.to(tl.int8))
    tl.store(iterations_ptr + pid, iterations)
    tl.store(residual_ptr + pid, res)


@triton.jit
def backward_kkt_kernel(x_ptr, g_ptr, flag_ptr, weak_ptr, tol_ptr, __GRAD_SIG__, __KERNEL_SIG__, __CONST_SIG__):  # noqa: E501
    """Dense, as runtime/kkt.kkt_jacobian: the KKT Jacobian from N JVPs, the rows of weakly active
    constraints replaced by dlam_i = 0, its transpose solved by Gaussian elimination."""
    pid = tl.program_id(0).to(tl.int64)
    __LOAD_PARAMS__
    x = load_var(x_ptr + pid * N, __ARGS__)
    g = load_var(g_ptr + pid * N, __ARGS__)
    tol = tl.load(tol_ptr)
    r = tl.arange(0, VAR_BLOCK)
    J = jacobian(x, __ARGS__)
    lam = take(x, __NV__, __NI__, VAR_BLOCK, VAR_BLOCK)
    gi = ineq_flat(x, __ARGS__)
    small = tl.minimum(tl.abs(lam), tl.abs(gi))
    large = tl.maximum(tl.abs(lam), tl.abs(gi))
    weak = (r < __NI__) & (large <= WEAK * tl.sqrt(tol)) & (small >= BALANCE * large)
    rows = place(weak.to(DTYPE), __NV__, __NI__, VAR_BLOCK, VAR_BLOCK) > 0.5  # row NV + i: complementarity of row i
    J = tl.where(rows[:, None], tl.where(r[:, None] == r[None, :], -1.0, 0.0), J)
    w, singular = gauss_solve_precise(tl.trans(J), g, N, VAR_BLOCK, DTYPE)
    store_grads(x, w, pid, __GRAD_ARGS__, __ARGS__)
    tl.store(flag_ptr + pid, singular.to(tl.int8))
    tl.store(weak_ptr + pid, tl.max(weak.to(tl.int32), axis=0).to(tl.int8))
