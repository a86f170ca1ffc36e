# --- template fista.py: the kernel around optlang/solvers/pgd.py's fista_solve ---
# One program solves one problem instance with every iteration inside; ACCELERATE (a constexpr)
# is FISTA's momentum, off for solver "pgd".
#: Placeholders: as in newton.py.


@triton.jit
def fista_kernel(x_ptr, status_ptr, iterations_ptr, residual_ptr, tol_ptr, max_iter, __KERNEL_SIG__, ACCELERATE: tl.constexpr, __CONST_SIG__):  # noqa: E501
    """Minimize f + r (r by its prox) from the projection of 0, for the problem instance of this program."""
    pid = tl.program_id(0).to(tl.int64)
    __LOAD_PARAMS__
    tol = tl.load(tol_ptr)
    x, res, done, iterations = fista_solve(tl.zeros((VAR_BLOCK,), DTYPE), tol, max_iter, ACCELERATE, __ARGS__)
    store_var(x_ptr + pid * N, x, __ARGS__)
    tl.store(status_ptr + pid, tl.where(done, CONVERGED, MAX_ITER).to(tl.int8))
    tl.store(iterations_ptr + pid, iterations)
    tl.store(residual_ptr + pid, res)
