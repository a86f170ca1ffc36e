# --- template backward.py: the implicit function theorem's backward pass (optlang/solvers/backward.py) ---
# At the solution x: solve (dF/dx)^T w = g, then grad_theta = -(dF/dtheta)^T w.
# One program per problem instance.
#: Placeholders: as in newton.py, plus __GRAD_SIG__ / __GRAD_ARGS__ (one output
#: pointer per param's gradient, the full batch in front).


@triton.jit
def backward_direct_kernel(x_ptr, g_ptr, flag_ptr, __GRAD_SIG__, __KERNEL_SIG__, __CONST_SIG__):
    """Dense: build the Jacobian from N JVPs, solve its transpose by Gaussian elimination."""
    pid = tl.program_id(0).to(tl.int64)
    __LOAD_PARAMS__
    x = load_var(x_ptr + pid * N, __ARGS__)
    g = load_var(g_ptr + pid * N, __ARGS__)
    J = jacobian(x, __ARGS__)
    w, singular = gauss_solve_precise(tl.trans(J), g, N, VAR_BLOCK, DTYPE)
    store_grads(x, w, pid, __GRAD_ARGS__, __ARGS__)
    tl.store(flag_ptr + pid, singular.to(tl.int8))
