# --- template newton.py: the kernel around optlang/solvers/newton.py's newton_solve ---
# One program solves one problem instance with every iteration inside.
#: Placeholders: __SIG__ / __ARGS__ (see common.py), __KERNEL_SIG__ (param pointers
#: and batch strides, N, the dims), __CONST_SIG__ (the constexpr tile sizes and
#: DTYPE), __LOAD_PARAMS__ (the statements loading this instance's param tiles).


@triton.jit
def newton_kernel(x_ptr, status_ptr, iterations_ptr, residual_ptr, tol_ptr, max_iter, __KERNEL_SIG__, __CONST_SIG__):  # noqa: E501
    """Solve residual(x) = 0 from x = 0 for the problem instance of this program."""
    pid = tl.program_id(0).to(tl.int64)
    __LOAD_PARAMS__
    tol = tl.load(tol_ptr)
    x, res, done, iterations = newton_solve(tl.zeros((VAR_BLOCK,), DTYPE), tol, max_iter, __ARGS__)
    store_var(x_ptr + pid * N, x, __ARGS__)
    tl.store(status_ptr + pid, tl.where(done, CONVERGED, MAX_ITER).to(tl.int8))
    tl.store(iterations_ptr + pid, iterations)
    tl.store(residual_ptr + pid, res)
