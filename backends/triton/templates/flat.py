# --- template flat.py: the var's flat state ------------------------------------------------
# The solvers work on the var as a flat [VAR_BLOCK] tile; its lanes past the var's
# size are padding and stay 0. (Several vars, or a var of rank 2, are blocks of it, each row-major,
# vars in order; the kkt kind's flat state is the vars, then the duals.)
#: Placeholders: __SIG__ as in common.py; __VAR_SIZE__, the var's size (n_d, or 1 for a scalar var; N for several blocks).


@triton.jit
def var_lanes(__SIG__):
    """The lanes of the flat state that hold the var; the rest are padding."""
    return tl.arange(0, VAR_BLOCK) < __VAR_SIZE__


@triton.jit
def load_var(ptr, __SIG__):
    """This instance's var (or a cotangent on it) from row-major memory, as the flat state."""
    return tl.load(ptr + tl.arange(0, VAR_BLOCK), mask=tl.arange(0, VAR_BLOCK) < __VAR_SIZE__, other=0.0)


@triton.jit
def store_var(ptr, xf, __SIG__):
    """Store the flat state as this instance's var."""
    tl.store(ptr + tl.arange(0, VAR_BLOCK), xf, mask=tl.arange(0, VAR_BLOCK) < __VAR_SIZE__)
