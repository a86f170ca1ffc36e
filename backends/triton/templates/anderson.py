# --- template anderson.py: the kernel around optlang/solvers/anderson.py's anderson_solve ---
# One program solves one problem instance with every iteration inside; its histories are
# [MEMORY_BLOCK, VAR_BLOCK] tiles (MEMORY rows padded to a power of two).
#: Placeholders: as in newton.py, plus __MEMORY_BLOCK__, the power of two of anderson.MEMORY.
MEMORY_BLOCK = tl.constexpr(__MEMORY_BLOCK__)


@triton.jit
def anderson_kernel(x_ptr, status_ptr, iterations_ptr, residual_ptr, tol_ptr, max_iter, __KERNEL_SIG__, __CONST_SIG__):  # noqa: E501
    """Solve x = g(x) from x = 0 for the problem instance of this program."""
    pid = tl.program_id(0).to(tl.int64)
    __LOAD_PARAMS__
    tol = tl.load(tol_ptr)
    x, res, done, failed, iterations = anderson_solve(tl.zeros((VAR_BLOCK,), DTYPE), tol, max_iter, __ARGS__)
    store_var(x_ptr + pid * N, x, __ARGS__)
    status = tl.where(failed, FAILED, tl.where(done, CONVERGED, MAX_ITER))
    tl.store(status_ptr + pid, status.to(tl.int8))
    tl.store(iterations_ptr + pid, iterations)
    tl.store(residual_ptr + pid, res)
