# --- template backward_cg.py: the kernel around optlang/solvers/adjoint_cg.py's adjoint_cg ---
# The backward pass by conjugate gradients (smooth; a prox on its free set). One program per instance.
#: Placeholders: as in backward.py.


@triton.jit
def backward_cg_kernel(x_ptr, g_ptr, flag_ptr, tol_ptr, __GRAD_SIG__, __KERNEL_SIG__, __CONST_SIG__):
    """Matrix-free: CG through Hessian-vector products; flag_ptr gets 1 where CG did not converge."""
    pid = tl.program_id(0).to(tl.int64)
    __LOAD_PARAMS__
    x = load_var(x_ptr + pid * N, __ARGS__)
    g = load_var(g_ptr + pid * N, __ARGS__)
    w, ok = adjoint_cg(x, g, tl.load(tol_ptr), __ARGS__)
    store_grads(x, w, pid, __GRAD_ARGS__, __ARGS__)
    tl.store(flag_ptr + pid, (ok == 0).to(tl.int8))
