# --- template backward_cg.py: the backward pass by conjugate gradients (smooth, elementwise prox) ---
# CG on the Hessian (smooth), or on D H D + (I - D) with D the free mask (an elementwise prox),
# as optlang/solvers/backward.py and linalg.cg.
#: Placeholders: as in backward.py.
CG_MAX_ITER = tl.constexpr(__CG_MAX_ITER__)


@triton.jit
def cg_matvec(x, D, v, __SIG__):
    """The operator CG inverts: H v, or D H D v + (1 - D) v on the free coordinates."""
    if DIAGONAL_PROX:
        Hv = hvp_flat(x, D * v, __ARGS__)
        out = D * Hv + (1.0 - D) * v
    else:
        out = hvp_flat(x, v, __ARGS__)
    return out


@triton.jit
def cg(x, D, b, tol, TINY: tl.constexpr, __SIG__):
    """Conjugate gradients from 0 on the operator of cg_matvec; returns (solution, converged)."""
    w = tl.zeros((VAR_BLOCK,), DTYPE)
    r = b
    p = r
    rs = tl.sum(r * r, axis=0)
    bnorm = tl.sqrt(tl.sum(b * b, axis=0))
    target = (tol * tl.maximum(bnorm, TINY)) * (tol * tl.maximum(bnorm, TINY))
    done = rs <= target
    steps = 0
    while (steps < CG_MAX_ITER) & (done == 0):
        Ap = cg_matvec(x, D, p, __ARGS__)
        pAp = tl.sum(p * Ap, axis=0)
        alpha = tl.where(pAp <= 0.0, 0.0, rs / tl.where(pAp == 0.0, 1.0, pAp))
        w = w + alpha * p
        r = r - alpha * Ap
        rs_new = tl.sum(r * r, axis=0)
        p = r + (rs_new / tl.maximum(rs, TINY)) * p
        rs = rs_new
        done = (rs <= target) | (pAp <= 0.0)
        steps += 1
    return w, rs <= target


@triton.jit
def backward_cg_kernel(x_ptr, g_ptr, flag_ptr, tol_ptr, __GRAD_SIG__, __KERNEL_SIG__, TINY: tl.constexpr, __CONST_SIG__):  # noqa: E501
    """Matrix-free: CG through Hessian-vector products; flag_ptr gets 1 where CG did not converge."""
    pid = tl.program_id(0).to(tl.int64)
    __LOAD_PARAMS__
    x = load_var(x_ptr + pid * N, __ARGS__)
    g = load_var(g_ptr + pid * N, __ARGS__)
    tol = tl.load(tol_ptr)
    if DIAGONAL_PROX:
        D = free_flat(x, __ARGS__)
        # J^T w = g splits by the free set: H_FF w_F = g_F by CG, then w_A = g_A - (H w_F)_A.
        w_free, ok = cg(x, D, D * g, tol, TINY, __ARGS__)
        w_free = D * w_free
        Hw = hvp_flat(x, w_free, __ARGS__)
        w = w_free + (1.0 - D) * (g - Hw)
    else:
        lanes = var_lanes(__ARGS__)
        D = lanes.to(DTYPE)  # every coordinate is free
        w, ok = cg(x, D, g, tol, TINY, __ARGS__)
    store_grads(x, w, pid, __GRAD_ARGS__, __ARGS__)
    tl.store(flag_ptr + pid, (ok == 0).to(tl.int8))
