"""Time and check the lasso: optlang against JAXopt and cvxpylayers.

For one problem or a batch of problems  min_w 0.5 ||X w - y||^2 + lam ||w||_1
(X is n x d, lam = 0.1 ||X'y||_inf per problem) it times the forward solve
alone and the forward solve plus the gradients of the loss  sum_i <c_i, w_i>
with respect to X, y and lam, and measures every method's accuracy against a
float64 reference: Clarabel at tolerance 1e-12 picks the support, the solution
is made exact on it, w_S = (X_S'X_S)^{-1} (X_S'y - lam s_S), and that closed
form is differentiated (checked against finite differences before anything is
timed).

Each peer is optional: one whose import fails is skipped with the reason.
Run `python benchmarks/lasso.py --help` for the options; see benchmarks/README.md.
Timing, thread control and formatting come from nnls.py, the rest of the
machinery (rows, measuring, tables, the main loop) from ridge.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import ridge, lasso_methods` from elsewhere
from lasso_methods import PEERS, variants  # noqa: E402
from ridge import PARAMS, Batch, Problem, finite_difference_check, main_loop, parser  # noqa: E402

LAM_FRACTION = 0.1  # lam = LAM_FRACTION * ||X'y||_inf (at 1 or more, w = 0)


def make_batch(batch: int, n: int, d: int, seed: int) -> Batch:
    """X, y, c standard normal; lam = 0.1 ||X'y||_inf per problem (about 35 of 50 weights nonzero at 100 x 50)."""
    rng = np.random.default_rng(seed)
    X, y, c = rng.standard_normal((batch, n, d)), rng.standard_normal((batch, n)), rng.standard_normal((batch, d))
    lam = LAM_FRACTION * np.abs(np.einsum("bnd,bn->bd", X, y)).max(axis=1)
    return Batch(X, y, lam, c, unbatched=batch == 1)


CLARABEL_TIGHT = dict(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, tol_ktratio=1e-10, max_iter=200)


def clarabel_lasso(X: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """The lasso by Clarabel (called directly, no cvxpy canonicalization) as the QP in (w, t):
    minimize 0.5 w'X'Xw - y'Xw + lam 1't  s.t.  w - t <= 0, -w - t <= 0.

    At tight tolerances first; where Clarabel does not end Solved there, at its defaults (1e-8):
    only the support is taken from it, and `reference` checks the exact point it leads to."""
    import clarabel
    import scipy.sparse as sp

    d = X.shape[1]
    P = np.zeros((2 * d, 2 * d))
    P[:d, :d] = X.T @ X
    q = np.concatenate([-X.T @ y, np.full(d, lam)])
    eye = np.eye(d)
    A = sp.csc_matrix(np.block([[eye, -eye], [-eye, -eye]]))
    for options in (CLARABEL_TIGHT, {}):
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        for key, value in options.items():
            setattr(settings, key, value)
        sol = clarabel.DefaultSolver(sp.csc_matrix(np.triu(P)), q, A, np.zeros(2 * d),
                                     [clarabel.NonnegativeConeT(2 * d)], settings).solve()
        if str(sol.status) == "Solved":
            return np.asarray(sol.x)[:d]
    raise RuntimeError(f"reference: Clarabel ended with {sol.status}")


def reference(X: np.ndarray, y: np.ndarray, lam: float, c: np.ndarray):
    """Exact lasso solution and the gradient of <c, w> w.r.t. (X, y, lam), for one problem.

    Clarabel picks the support S = {|w_j| > 1e-8 ||w||_inf} and its signs s; on S
    the optimality condition X_S'(y - X_S w_S) = lam s is linear, so
    w_S = M^{-1}(X_S'y - lam s) with M = X_S'X_S, and w = 0 off S. With
    u = M^{-1} c_S and r = y - X w, differentiating gives
        dL/dy = X_S u,    dL/dlam = -s'u,
        dL/dX[:, S] = r u' - (X_S u) w_S',    dL/dX[:, j] = 0 for j not in S
    (valid while S and s do not change, which the margins below guarantee
    locally: sign(w_S) = s and |X_j'r| < lam off S).
    """
    w0 = clarabel_lasso(X, y, lam)
    S = np.abs(w0) > 1e-8 * np.abs(w0).max(initial=0.0)
    s = np.sign(w0[S])
    XS = X[:, S]
    M = XS.T @ XS
    w = np.zeros(X.shape[1])
    w[S] = np.linalg.solve(M, XS.T @ y - lam * s)
    r = y - X @ w
    u = np.linalg.solve(M, c[S])
    XSu = XS @ u
    gX = np.zeros_like(X)
    gX[:, S] = np.outer(r, u) - np.outer(XSu, w[S])
    scale = max(np.abs(w).max(initial=0.0), np.finfo(np.float64).tiny)
    facts = {"support": int(S.sum()),
             # positive iff every weight on S kept the sign Clarabel gave it; the smallest |w_j| / ||w||_inf on S
             "sign_margin": float((s * w[S]).min(initial=np.inf) / scale),
             # positive iff |X_j'r| < lam off S (strict dual feasibility there): min over j not in S of 1 - |X_j'r| / lam
             "dual_margin": float((1.0 - np.abs(X[:, ~S].T @ r) / lam).min(initial=np.inf)),
             "clarabel_gap": float(np.abs(w - w0).max() / scale)}
    return w, {"X": gX, "y": XSu, "lam": -s @ u}, facts


def attach_reference(data: Batch) -> None:
    outs = [reference(*a) for a in zip(data.X, data.y, data.lam, data.c)]
    data.w = np.stack([o[0] for o in outs])
    data.grads = {k: np.stack([o[1][k] for o in outs]) for k in PARAMS}
    support = [o[2]["support"] for o in outs]
    data.facts = {"support_min": min(support), "support_mean": float(np.mean(support)), "support_max": max(support),
                  "d": int(data.X.shape[2]),
                  "sign_margin": min(o[2]["sign_margin"] for o in outs),
                  "dual_margin": min(o[2]["dual_margin"] for o in outs),
                  "clarabel_gap": max(o[2]["clarabel_gap"] for o in outs)}


def describe(data: Batch) -> str:
    f = data.facts
    return (f"support size min/mean/max {f['support_min']}/{f['support_mean']:.1f}/{f['support_max']} of {f['d']}; "
            f"smallest margins: off the support min 1 - |X_j'r|/lam = {f['dual_margin']:.1e}, on it "
            f"min |w_j|/||w||_inf = {f['sign_margin']:.1e}; Clarabel was {f['clarabel_gap']:.0e} from the exact point")


def suspicious(data: Batch):
    f = data.facts
    if not (f["sign_margin"] > 0 and f["dual_margin"] > 0):
        return ("the reference violates the optimality conditions (or strict complementarity) for some problem; "
                "its errors columns are not meaningful")
    return None


def self_check(args) -> float:
    def one(rng):
        b = make_batch(1, args.n, args.d, int(rng.integers(1 << 31)))
        return {"X": b.X[0], "y": b.y[0], "lam": float(b.lam[0])}, b.c[0]

    return finite_difference_check(reference, one, args.seed)


LASSO = Problem("lasso", make_batch, attach_reference, describe, self_check, variants, versions=("clarabel",),
                suspicious=suspicious)


def main(argv=None) -> int:
    args = parser(__doc__, n=100, d=50, peers=PEERS).parse_args(argv)
    return main_loop(args, LASSO)


if __name__ == "__main__":
    sys.exit(main())
