# --- template ipm.py: the Mehrotra interior-point method (optlang/solvers/ipm.py) and the KKT backward ---
# Mirrors ipm.py step for step, one program per problem instance with every iteration inside:
# the start x = 0, nu = 0, s = max(-g, 1), lam = 1; the residuals, scales and stopping test;
# sigma = (mu_aff / mu)^3; the corrector's target floored by `stop`; the fraction to the
# boundary; the reduced system [[H + Jg' diag(lam / s) Jg + d I, Jh'], [Jh, -d I]] with
# d = eps^(2/3), solved twice (predictor, corrector); the step halving for nonlinear g; the
# infeasibility and unboundedness certificates; the elimination of the x block, then of the
# Schur complement on the equality duals. Where it differs: ipm.py factors both SPD blocks by
# Cholesky (LU where rounding breaks it), this kernel eliminates them by gauss_solve; a zero
# pivot gives gauss_solve's basic solution where ipm.py takes the pseudo-inverse's, and sums
# run in another order (results agree to rounding).
# Tiles, each as small as its block: x and grad are [X_BLOCK] tiles (lanes 0 .. NV); g, s, lam
# [I_BLOCK] (0 .. NI); h, nu [E_BLOCK] (0 .. NE); all padded with 0. Jg is [I_BLOCK, X_BLOCK] and
# Jh [E_BLOCK, X_BLOCK] (rows the constraints, columns the vars), H and Kx = H + Jg' diag(lam / s)
# Jg + d I [X_BLOCK, X_BLOCK], padded with the identity where solved. The reduced system
# [[Kx, Jh'], [Jh, -d I]] is solved through its Schur complement S = Jh Kx^-1 Jh' + d I on the
# equality duals (`schur`), as ipm._factorize does, so no tile spans x and nu: at OptNet's n = 20 with 20/5 the largest is 32 x 32, at n = 64 with 32/8
# 64 x 64, where one tile of the whole state (vars and duals, VAR_BLOCK) is 64 x 64 and 128 x 128.
# The problem's functions take and give flat [VAR_BLOCK] tiles (the kkt adapters): `take` and
# `place` move vectors between the two layouts. The kernel stores the flat state (x, lam, nu),
# the status and the iteration count.
#: Placeholders: as in backward.py, plus __NV__, __NI__, __NE__ (the printed sizes of the
#: var, the inequality rows and the equality rows; X_BLOCK, I_BLOCK and E_BLOCK are constexprs), __NONLINEAR__ (not every constraint
#: affine), __CONSTANT_HESSIAN__ (affine constraints and a quadratic objective), and the constants of ipm.py and runtime/kkt.py (__FRACTION__, __TRUST__,
#: __MAX_BACKTRACKS__, __CERT__, __WEAK__, __BALANCE__, the status codes).
INFEASIBLE = tl.constexpr(__INFEASIBLE__)
UNBOUNDED = tl.constexpr(__UNBOUNDED__)
NONLINEAR = tl.constexpr(__NONLINEAR__)  # some constraint is not affine: steps are halved, certificates widened
# Affine constraints have constant Jacobians, and with a quadratic objective the Lagrangian's Hessian is
# constant too (a QP or LP): built once per solve, as runtime/kkt.py does.
CONSTANT_HESSIAN = tl.constexpr(__CONSTANT_HESSIAN__)
FRACTION = tl.constexpr(__FRACTION__)
TRUST = tl.constexpr(__TRUST__)
MAX_BACKTRACKS = tl.constexpr(__MAX_BACKTRACKS__)
CERT = tl.constexpr(__CERT__)
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
def amax(v):
    """max |v| over a padded tile (0 for an empty one), as ipm._norm."""
    return tl.max(tl.abs(v), axis=0)


@triton.jit
def finite_vec(v):
    return tl.min(is_finite(v).to(tl.int32), axis=0) == 1


@triton.jit
def finite_mat(A):
    return tl.min(tl.min(is_finite(A).to(tl.int32), axis=1), axis=0) == 1


@triton.jit
def mv(A, v):
    """A v for a matrix tile A."""
    return tl.sum(A * v[None, :], axis=1)


@triton.jit
def mtv(A, v):
    """A' v."""
    return tl.sum(A * v[:, None], axis=0)


@triton.jit
def evaluate(x, Jg, Jh, __SIG__):
    """f, grad f, g, Jg, h, Jh at x (ipm._point); the Jacobians given (affine constraints) or rebuilt."""
    xf = place(x, 0, __NV__, X_BLOCK, VAR_BLOCK)
    f = objective_flat(xf, __ARGS__)
    grad = take(gradient_flat(xf, __ARGS__), 0, __NV__, VAR_BLOCK, X_BLOCK)
    g = take(ineq_flat(xf, __ARGS__), 0, __NI__, VAR_BLOCK, I_BLOCK)
    h = take(eq_flat(xf, __ARGS__), 0, __NE__, VAR_BLOCK, E_BLOCK)
    if NONLINEAR:
        Jg, Jh = jacobians(x, __ARGS__)
    return f, grad, g, Jg, h, Jh


@triton.jit
def jacobians(x, __SIG__):
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
def hessian(x, lam, nu, __SIG__):
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
def scales(x, lam, nu, grad, g, Jg, h, Jh, __SIG__):
    """(P, D, Pg, G) of ipm._scales."""
    r = tl.arange(0, I_BLOCK)
    Jgx = mv(Jg, x)
    Jhx = mv(Jh, x)
    Pg = tl.maximum(tl.abs(Jgx), tl.abs(g - Jgx))
    P = tl.maximum(tl.maximum(amax(Pg), amax(Jhx)), amax(h - Jhx))
    D = tl.maximum(tl.maximum(amax(grad), amax(mtv(Jg, lam))), amax(mtv(Jh, nu)))
    G = tl.max(tl.abs(Jg), axis=1)
    return tl.maximum(P, 1.0), tl.maximum(D, 1.0), tl.where(r < __NI__, tl.maximum(Pg, 1.0), 1.0), G


@triton.jit
def kkt_residual(x, s, lam, nu, grad, g, Jg, h, Jh, __SIG__):
    """Max of the relative primal and dual residuals and complementarity (ipm._kkt_residual)."""
    r_d = grad + mtv(Jg, lam) + mtv(Jh, nu)
    r_g = g + s
    P, D, Pg, G = scales(x, lam, nu, grad, g, Jg, h, Jh, __ARGS__)
    comp = tl.minimum(s / Pg, lam * G / D)
    return tl.maximum(tl.maximum(tl.maximum(amax(r_g), amax(h)) / P, amax(r_d) / D), amax(comp))


@triton.jit
def x_system(H, Jg, s, lam, DELTA: tl.constexpr, __SIG__):
    """Kx = H + Jg' diag(lam / s) Jg + d I, the x block of ipm._factorize's system; identity on the padding."""
    ri = tl.arange(0, I_BLOCK)
    r = tl.arange(0, X_BLOCK)
    w = lam / tl.where(ri < __NI__, s, 1.0)
    K = H
    for i in range(0, __NI__):
        row = tl.sum(tl.where(ri[:, None] == i, Jg, 0.0), axis=0)
        w_i = tl.sum(tl.where(ri == i, w, 0.0), axis=0)
        K += row[:, None] * (w_i * row)[None, :]
    return K + tl.where(r[:, None] == r[None, :], tl.where(r < __NV__, DELTA, 1.0)[:, None], 0.0)


@triton.jit
def schur(Kx, Jh, DELTA: tl.constexpr, __SIG__):
    """(Z, S): Z = Kx^-1 Jh' [X_BLOCK, E_BLOCK] and the Schur complement S = Jh Z + d I of [[Kx, Jh'],
    [Jh, -d I]] on the equality duals [E_BLOCK, E_BLOCK], identity on the padding."""
    re = tl.arange(0, E_BLOCK)
    Z, zero_pivot = gauss_solve_columns(Kx, tl.trans(Jh), X_BLOCK, E_BLOCK, DTYPE)
    S = tl.sum(Jh[:, :, None] * Z[None, :, :], axis=1)
    return Z, S + tl.where(re[:, None] == re[None, :], tl.where(re < __NE__, DELTA, 1.0)[:, None], 0.0)


@triton.jit
def direction(Kx, Z, S, Jg, Jh, s, lam, r_d, r_g, r_h, r_c, __SIG__):
    """Newton step (dx, ds, dlam, dnu) driving the residuals to 0 and s * lam to s * lam - r_c: the
    reduced system [[Kx, Jh'], [Jh, -d I]] (dx, dnu) = (r1, -r_h) by its Schur complement,
    dnu = S^-1 (Jh y + r_h) and dx = y - Z dnu with y = Kx^-1 r1."""
    r = tl.arange(0, X_BLOCK)
    ri = tl.arange(0, I_BLOCK)
    s1 = tl.where(ri < __NI__, s, 1.0)
    r1 = -r_d - mtv(Jg, (lam * r_g - r_c) / s1)
    y, singular = gauss_solve(Kx, r1, X_BLOCK, DTYPE)
    dnu, singular_s = gauss_solve(S, mv(Jh, y) + r_h, E_BLOCK, DTYPE)
    dx = tl.where(r < __NV__, y - mv(Z, dnu), 0.0)
    ds = tl.where(ri < __NI__, -r_g - mv(Jg, dx), 0.0)
    dlam = tl.where(ri < __NI__, -(r_c + lam * ds) / s1, 0.0)
    return dx, ds, dlam, dnu


@triton.jit
def max_step(s, lam, ds, dlam, frac, __SIG__):
    """Largest step in [0, 1] keeping s and lam at least (1 - frac) times their values."""
    r = tl.arange(0, I_BLOCK)
    rows = r < __NI__
    rs = tl.where(rows & (ds < 0.0), -s / tl.where(ds < 0.0, ds, -1.0), INF)
    rl = tl.where(rows & (dlam < 0.0), -lam / tl.where(dlam < 0.0, dlam, -1.0), INF)
    return tl.minimum(frac * tl.minimum(tl.min(rs, axis=0), tl.min(rl, axis=0)), 1.0)


@triton.jit
def stop(x, s, lam, nu, grad, g, Jg, h, Jh, tol, EPS: tl.constexpr, __SIG__):
    """Per row, the s * lam the corrector aims no lower than (ipm._stop)."""
    c = tl.where(tol > 1e4 * EPS, 0.1, 0.5) * tol
    P, D, Pg, G = scales(x, lam, nu, grad, g, Jg, h, Jh, __ARGS__)
    cD = c * D
    lam_stop = tl.where(lam * G > cD, cD / tl.where(G > 0.0, G, 1.0), lam)
    return tl.maximum(lam * tl.minimum(c * Pg, s), s * lam_stop)


@triton.jit
def move(x, s, lam, nu, dx, ds, dlam, dnu, a, __SIG__):
    """The point (x, s, lam, nu) + a (dx, ds, dlam, dnu), s and lam floored at (1 - FRACTION) of theirs."""
    s_new = tl.maximum(s + a * ds, (1 - FRACTION) * s)
    lam_new = tl.maximum(lam + a * dlam, (1 - FRACTION) * lam)
    return x + a * dx, s_new, lam_new, nu + a * dnu


@triton.jit
def finite_point(x, s, lam, nu, f, grad, g, Jg, h, Jh):
    """Whether the point is finite (constant Jacobians were checked at the start: vectors only)."""
    ok = finite_vec(x) & finite_vec(s) & finite_vec(lam) & finite_vec(nu) & is_finite(f)
    ok = ok & finite_vec(grad) & finite_vec(g) & finite_vec(h)
    if NONLINEAR:
        ok = ok & finite_mat(Jg) & finite_mat(Jh)
    return ok


@triton.jit
def ipm_step(x, s, lam, nu, grad, g, Jg, h, Jh, H, tol, EPS: tl.constexpr, TINY: tl.constexpr, DELTA: tl.constexpr, __SIG__):  # noqa: E501
    """One predictor-corrector step (ipm._step): the new (x, s, lam, nu, f, grad, g, Jg, h, Jh)."""
    r_d = grad + mtv(Jg, lam) + mtv(Jh, nu)
    r_g = g + s
    Kx = x_system(H, Jg, s, lam, DELTA, __ARGS__)
    Z, S = schur(Kx, Jh, DELTA, __ARGS__)
    sl = s * lam
    m = tl.maximum(tl.zeros((), DTYPE) + __NI__, 1.0)
    mu = tl.sum(sl, axis=0) / m
    dx, ds, dlam, dnu = direction(Kx, Z, S, Jg, Jh, s, lam, r_d, r_g, h, sl, __ARGS__)
    a = max_step(s, lam, ds, dlam, 1.0, __ARGS__)
    mu_aff = tl.sum((s + a * ds) * (lam + a * dlam), axis=0) / m
    q = tl.minimum(tl.maximum(mu_aff / tl.maximum(mu, TINY), 0.0), 1.0)
    sigma = q * q * q
    target = tl.maximum(sigma * mu, stop(x, s, lam, nu, grad, g, Jg, h, Jh, tol, EPS, __ARGS__))
    # Corrector: aim at the target and cancel the predictor's second-order term.
    dx, ds, dlam, dnu = direction(Kx, Z, S, Jg, Jh, s, lam, r_d, r_g, h, sl + ds * dlam - target, __ARGS__)
    alpha = max_step(s, lam, ds, dlam, FRACTION, __ARGS__)
    x1, s1, lam1, nu1 = move(x, s, lam, nu, dx, ds, dlam, dnu, alpha, __ARGS__)
    f1, grad1, g1, Jg1, h1, Jh1 = evaluate(x1, Jg, Jh, __ARGS__)
    if NONLINEAR:
        # Halve the step until the linearization of g describes it (ipm._backtrack); an
        # instance whose steps never pass keeps the smallest one tried.
        Jgdx = mv(Jg, dx)
        rows = tl.arange(0, I_BLOCK) < __NI__
        pred = alpha * Jgdx
        err = tl.abs(g1 - g - pred)
        fits = tl.min(tl.where(rows & (err > TRUST * (tl.abs(pred) + tl.abs(g) + s)), 0, 1), axis=0) == 1
        accepted = fits & finite_point(x1, s1, lam1, nu1, f1, grad1, g1, Jg1, h1, Jh1)
        tries = 1
        while (tries < MAX_BACKTRACKS) & (accepted == 0):
            alpha = 0.5 * alpha
            x1, s1, lam1, nu1 = move(x, s, lam, nu, dx, ds, dlam, dnu, alpha, __ARGS__)
            f1, grad1, g1, Jg1, h1, Jh1 = evaluate(x1, Jg, Jh, __ARGS__)
            pred = alpha * Jgdx
            err = tl.abs(g1 - g - pred)
            fits = tl.min(tl.where(rows & (err > TRUST * (tl.abs(pred) + tl.abs(g) + s)), 0, 1), axis=0) == 1
            accepted = fits & finite_point(x1, s1, lam1, nu1, f1, grad1, g1, Jg1, h1, Jh1)
            tries += 1
    return x1, s1, lam1, nu1, f1, grad1, g1, Jg1, h1, Jh1


@triton.jit
def certificates(x, s, lam, nu, grad, g, Jg, h, Jh, H, scale, tol, EPS: tl.constexpr, TINY: tl.constexpr, __SIG__):  # noqa: E501
    """(infeasible, unbounded): does this instance's iterate look infeasible or unbounded (ipm._certificates)."""
    cert = tl.maximum(tol, CERT)
    blowup = 1.0 / tl.sqrt(tl.full((), EPS, DTYPE))
    y = mtv(Jg, lam) + mtv(Jh, nu)
    c = tl.sum(lam * g, axis=0) + tl.sum(nu * h, axis=0) - tl.sum(y * x, axis=0)
    duals = tl.maximum(amax(lam), amax(nu))
    infeasible = (duals > blowup * scale) & (c > 0.0) & (amax(y) <= cert * c)
    if NONLINEAR:
        P, D, Pg, G = scales(x, lam, nu, grad, g, Jg, h, Jh, __ARGS__)
        stalled = tl.maximum(amax(g + s), amax(h)) > P * tl.sqrt(tol)
        infeasible = infeasible | ((duals > blowup * blowup * scale) & stalled)
    size = amax(x)
    d = x / tl.maximum(size, TINY)
    slope = -tl.sum(grad * d, axis=0)
    bound = cert * slope
    keeps = (amax(mv(H, d)) <= bound) & (tl.maximum(amax(tl.maximum(mv(Jg, d), 0.0)), amax(mv(Jh, d))) <= bound)
    unbounded = (size > blowup * scale) & (slope > 0.0) & keeps
    return infeasible, unbounded


@triton.jit
def ipm_kernel(x_ptr, status_ptr, iterations_ptr, residual_ptr, tol_ptr, max_iter, __KERNEL_SIG__, EPS: tl.constexpr, TINY: tl.constexpr, DELTA: tl.constexpr, __CONST_SIG__):  # noqa: E501
    """Solve the KKT conditions from x = 0 for this program's instance; store the flat state (x, lam, nu)."""
    pid = tl.program_id(0).to(tl.int64)
    __LOAD_PARAMS__
    tol = tl.load(tol_ptr)
    r = tl.arange(0, I_BLOCK)
    x = tl.zeros((X_BLOCK,), DTYPE)
    nu = tl.zeros((E_BLOCK,), DTYPE)
    Jg, Jh = jacobians(x, __ARGS__)
    f, grad, g, Jg, h, Jh = evaluate(x, Jg, Jh, __ARGS__)
    # Slacks make the start feasible in g + s = 0 where g(0) is far inside, else 1.
    s = tl.where(r < __NI__, tl.maximum(-g, 1.0), 0.0)
    lam = (r < __NI__).to(DTYPE)
    res = kkt_residual(x, s, lam, nu, grad, g, Jg, h, Jh, __ARGS__)
    status = tl.where(res <= tol, CONVERGED, MAX_ITER)
    iterations = tl.zeros((), tl.int32)
    scale = tl.maximum(tl.maximum(tl.maximum(amax(grad), amax(g)), amax(h)), 1.0)  # for the blow-up tests
    # A constant Jacobian with a non-finite entry fails at the start (the loop checks vectors only).
    status = tl.where(finite_mat(Jg) & finite_mat(Jh), status, FAILED)
    if CONSTANT_HESSIAN:
        H = hessian(x, lam, nu, __ARGS__)
    while (iterations < max_iter) & (status == MAX_ITER):
        if CONSTANT_HESSIAN == 0:
            H = hessian(x, lam, nu, __ARGS__)
        x1, s1, lam1, nu1, f1, grad1, g1, Jg1, h1, Jh1 = ipm_step(x, s, lam, nu, grad, g, Jg, h, Jh, H, tol, EPS, TINY, DELTA, __ARGS__)  # noqa: E501
        keep = finite_point(x1, s1, lam1, nu1, f1, grad1, g1, Jg1, h1, Jh1)
        x = tl.where(keep, x1, x)
        s = tl.where(keep, s1, s)
        lam = tl.where(keep, lam1, lam)
        nu = tl.where(keep, nu1, nu)
        grad = tl.where(keep, grad1, grad)
        g = tl.where(keep, g1, g)
        Jg = tl.where(keep, Jg1, Jg)
        h = tl.where(keep, h1, h)
        Jh = tl.where(keep, Jh1, Jh)
        iterations += 1
        res = tl.where(keep, kkt_residual(x, s, lam, nu, grad, g, Jg, h, Jh, __ARGS__), res)
        infeasible, unbounded = certificates(x, s, lam, nu, grad, g, Jg, h, Jh, H, scale, tol, EPS, TINY, __ARGS__)
        status = tl.where(keep == 0, FAILED, tl.where(res <= tol, CONVERGED, status))
        status = tl.where((status == MAX_ITER) & infeasible, INFEASIBLE, status)
        status = tl.where((status == MAX_ITER) & unbounded, UNBOUNDED, status)
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
    w, singular = gauss_solve(tl.trans(J), g, VAR_BLOCK, DTYPE)
    store_grads(x, w, pid, __GRAD_ARGS__, __ARGS__)
    tl.store(flag_ptr + pid, singular.to(tl.int8))
    tl.store(weak_ptr + pid, tl.max(weak.to(tl.int32), axis=0).to(tl.int8))
