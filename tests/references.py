"""Planted data, independent reference solvers and closed-form derivatives for the class examples.

Used by test_classes.py. Each `sample_*` draws one batch element from a NumPy
generator and returns (params, truth): the parameters of the `.opt` example
and the planted solution and multipliers they were built from. Constrained
examples are planted the way problems.py plants nnls and box_ls: the solution,
its active set and the multipliers of the active constraints (at least
MARGIN) come first and the remaining data are chosen to make them optimal, so
strict complementarity holds with room to spare and neither finite
differences nor gradcheck cross an active-set change.

The references share no code with optlang: closed forms (sparsemax, the ball,
exp caps), cvxpy (CLARABEL, tight tolerances), coordinate descent polished on
its support, plain fixed-point iteration, and exact active-set solves of the
KKT linear system (for finite differences, which need a reference smooth to
the last digits). The vector-Jacobian products come from each example's KKT
system, written out in NumPy.
"""
from __future__ import annotations

import cvxpy as cp
import numpy as np

from problems import EPS64, MARGIN, _planted_rhs, conditioned

TIGHT = dict(tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11, tol_ktratio=1e-9, max_iter=200)


def cvxpy_solve(problem: cp.Problem) -> None:
    """CLARABEL to tight tolerances; at its defaults (1e-8) where it cannot reach them."""
    try:
        problem.solve(solver=cp.CLARABEL, **TIGHT)
    except cp.error.SolverError:
        problem.solve(solver=cp.CLARABEL)
    assert problem.status == cp.OPTIMAL, problem.status
SUPPORT = 1e-8  # a solver's entry above this is on the support (planted supports are >= 0.05 away)


# -- drawing a batch -----------------------------------------------------------------------------
def draw(sample, seed: int, size: dict, batch: tuple, shared: tuple = ()) -> tuple[dict, dict]:
    """(params, truth) for a whole batch, each element drawn on its own, stacked with the batch dims in
    front; the params named in `shared` are drawn once, have no batch dims, and broadcast."""
    rng = np.random.default_rng(seed)
    elements, given = [], {}
    for _ in np.ndindex(*batch):
        elements.append(sample(rng, size, given))
        given = {k: elements[0][0][k] for k in shared}

    def stack(which, skip=()):
        first = elements[0][which]
        return {k: np.asarray(first[k], dtype=np.float64) if k in skip else
                np.stack([np.asarray(e[which][k], dtype=np.float64) for e in elements]).reshape(
                    batch + np.shape(first[k])) for k in first}

    return stack(0, shared), stack(1)


def _given(given, name, make):
    """A shared param's value where it is given, else a fresh draw."""
    return given[name] if given and name in given else make()


def element(arrays: dict, idx: tuple) -> dict:
    return {k: v[idx] for k, v in arrays.items()}


def _simplex_point(rng, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(a point of the probability simplex, its support): a nonempty random support, entries >= 1 / (2k)."""
    support = rng.random(k) < 0.6
    support[rng.integers(k)] = True
    e = rng.uniform(1.0, 2.0, k) * support
    return e / e.sum(), support


def spd(rng, n: int, lo: float = 1.0, hi: float = 10.0) -> np.ndarray:
    """A symmetric positive definite matrix with eigenvalues in [lo, hi], symmetric to the last bit."""
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    S = (U * rng.uniform(lo, hi, n)) @ U.T
    return 0.5 * (S + S.T)


def fd(f, params: dict, name: str, direction: np.ndarray) -> np.ndarray:
    """The central difference of f(params) along params[name] + t * direction (step sqrt(eps) * scale)."""
    h = np.sqrt(EPS64) * max(1.0, float(np.abs(params[name]).max(initial=0.0)))
    plus = dict(params, **{name: params[name] + h * direction})
    minus = dict(params, **{name: params[name] - h * direction})
    return (np.asarray(f(plus)) - np.asarray(f(minus))) / (2 * h)


def eq_qp(H, q, E, e):
    """argmin 0.5 x'Hx + q'x s.t. E x = e, and the multipliers nu (L = f + nu'(Ex - e)): one linear solve.

    The gradient of 0.5 x'Hx is (H + H')/2 x: perturbing one entry of H perturbs both of its halves."""
    n, p = H.shape[0], E.shape[0]
    H = 0.5 * (H + H.T)
    K = np.block([[H, E.T], [E, np.zeros((p, p))]])
    sol = np.linalg.solve(K, np.concatenate([-q, e]))
    return sol[:n], sol[n:]


# -- sparsemax -----------------------------------------------------------------------------------
def sample_sparsemax(rng, size, given=None):
    n = size["n"]
    x, support = _simplex_point(rng, n)
    tau = rng.uniform(-1.0, 1.0)
    v = np.where(support, x + tau, tau - rng.uniform(MARGIN, 2.0, n))
    return {"v": v}, {"x": x}


def sparsemax(v: np.ndarray) -> np.ndarray:
    """The closed form of Martins & Astudillo (2016): sort, find the support size, threshold."""
    z = np.sort(v)[::-1]
    cssv = np.cumsum(z) - 1.0
    k = np.arange(1, len(v) + 1)
    rho = k[z - cssv / k > 0][-1]
    return np.maximum(v - cssv[rho - 1] / rho, 0.0)


def vjp_sparsemax(p, x, g):
    """J = diag(s) - s s' / |S| (s the support's indicator) is symmetric, so the VJP is J g."""
    s = (x > SUPPORT).astype(np.float64)
    return {"v": s * g - s * (s @ g) / s.sum()}


# -- lasso and elastic net -----------------------------------------------------------------------
def _sample_sparse_ls(rng, n, d, lam1, lam2, given):
    """X, y making a planted w* optimal, with margins on both sides of every |X_j'r| = lam1."""
    X = _given(given, "X", lambda: conditioned(rng, n, d, cond_max=5.0))  # Neumann needs ~cond(X'X) terms
    support = rng.random(d) < 0.6
    sign = rng.choice([-1.0, 1.0], d)
    w = np.where(support, sign * rng.uniform(MARGIN, 2.0, d), 0.0)
    # X'(Xw - y) + lam2 w = -lam1 sign(w) on the support, |X'(Xw - y)| <= lam1 - MARGIN off it.
    off = rng.uniform(-(lam1 - MARGIN), lam1 - MARGIN, d)
    return X, _planted_rhs(rng, X, w, np.where(support, -lam1 * sign - lam2 * w, off)), w


def sample_lasso(rng, size, given=None):
    lam = _given(given, "lam", lambda: rng.uniform(2 * MARGIN, 3.0))
    X, y, w = _sample_sparse_ls(rng, size["n"], size["d"], lam, 0.0, given)
    return {"X": X, "y": y, "lam": lam}, {"w": w}


def sample_elastic_net(rng, size, given=None):
    lam1 = _given(given, "lam1", lambda: rng.uniform(2 * MARGIN, 3.0))
    lam2 = _given(given, "lam2", lambda: rng.uniform(0.1, 2.0))
    X, y, w = _sample_sparse_ls(rng, size["n"], size["d"], lam1, lam2, given)
    return {"X": X, "y": y, "lam1": lam1, "lam2": lam2}, {"w": w}


def _net(p):
    return p["X"], p["y"], float(p.get("lam", p.get("lam1"))), float(p.get("lam2", 0.0))


def elastic_net_cd(p):
    """Cyclic coordinate descent on 0.5|Xw - y|^2 + lam1|w|_1 + 0.5 lam2|w|^2 (lasso: lam2 = 0), then
    an exact re-solve on the support it found, with its signs: only rounding is left."""
    X, y, lam1, lam2 = _net(p)
    d = X.shape[1]
    w, r = np.zeros(d), y.copy()
    col = (X * X).sum(0)
    for _ in range(20000):
        change = 0.0
        for j in range(d):
            rho = X[:, j] @ r + col[j] * w[j]
            new = np.sign(rho) * max(abs(rho) - lam1, 0.0) / (col[j] + lam2)
            r -= X[:, j] * (new - w[j])
            change, w[j] = max(change, abs(new - w[j])), new
        if change <= 1e-12:
            break
    S = w != 0
    out = np.zeros(d)
    if S.any():
        XS = X[:, S]
        out[S] = np.linalg.solve(XS.T @ XS + lam2 * np.eye(int(S.sum())), XS.T @ y - lam1 * np.sign(w[S]))
    return out


def elastic_net_cvxpy(p):
    X, y, lam1, lam2 = _net(p)
    w = cp.Variable(X.shape[1])
    cvxpy_solve(cp.Problem(cp.Minimize(
        0.5 * cp.sum_squares(X @ w - y) + lam1 * cp.norm1(w) + 0.5 * lam2 * cp.sum_squares(w))))
    return w.value


def vjp_elastic_net(p, w, g):
    """On the support S, (X_S'X_S + lam2 I) w_S = X_S'y - lam1 sign(w_S); with v = that matrix^-1 g_S
    (zero off S): dX = (y - Xw) v' - (X v) w', dy = X v, dlam1 = -v'sign(w), dlam2 = -v'w."""
    X, y, lam1, lam2 = _net(p)
    S = np.abs(w) > SUPPORT
    w = np.where(S, w, 0.0)
    v = np.zeros_like(w)
    if S.any():
        XS = X[:, S]
        v[S] = np.linalg.solve(XS.T @ XS + lam2 * np.eye(int(S.sum())), g[S])
    out = {"X": np.outer(y - X @ w, v) - np.outer(X @ v, w), "y": X @ v}
    if "lam" in p:
        out["lam"] = np.asarray(-v @ np.sign(w))
    else:
        out["lam1"], out["lam2"] = np.asarray(-v @ np.sign(w)), np.asarray(-v @ w)
    return out


# -- qp (and portfolio, a qp) --------------------------------------------------------------------
def sample_qp(rng, size, given=None):
    n, m, p = size["n"], size["m"], size["p"]
    k = int(rng.integers(0, min(m, n - p) + 1))  # active rows of G z <= h: with A's, at most n (LICQ)
    active = np.zeros(m, dtype=bool)
    active[rng.choice(m, k, replace=False)] = True
    rows = conditioned(rng, k + p, n) if k + p else np.zeros((0, n))
    G = rng.standard_normal((m, n))
    G[active] = rows[:k]
    A = rows[k:]
    Q = _given(given, "Q", lambda: spd(rng, n))
    z = rng.standard_normal(n)
    lam = np.where(active, rng.uniform(MARGIN, 2.0, m), 0.0)
    nu = rng.standard_normal(p)
    h = G @ z + np.where(active, 0.0, rng.uniform(MARGIN, 2.0, m))
    c = -(Q @ z + G.T @ lam + A.T @ nu)
    return {"Q": Q, "c": c, "G": G, "h": h, "A": A, "b": A @ z}, {"z": z, "ineq": lam, "eq": nu}


def qp_cvxpy(p):
    """(z, ineq dual, eq dual) from cvxpy, whose duals follow the same Lagrangian as LANGUAGE.md's."""
    n = p["c"].shape[0]
    z = cp.Variable(n)
    ineq = p["G"] @ z <= p["h"]
    cons = [ineq]
    if p["A"].shape[0]:
        eq = p["A"] @ z == p["b"]
        cons.append(eq)
    cvxpy_solve(cp.Problem(cp.Minimize(0.5 * cp.quad_form(z, cp.psd_wrap(p["Q"])) + p["c"] @ z), cons))
    nu = eq.dual_value if p["A"].shape[0] else np.zeros(0)
    return z.value, ineq.dual_value, nu


def qp_active_set(p, active):
    """The exact solution for a known active set: an equality-constrained QP, one linear solve."""
    E = np.concatenate([p["G"][active], p["A"]])
    e = np.concatenate([p["h"][active], p["b"]])
    z, mult = eq_qp(p["Q"], p["c"], E, e)
    lam = np.zeros(len(active))
    lam[active] = mult[:int(active.sum())]
    return z, lam, mult[int(active.sum()):]


def vjp_qp(p, z, lam, nu, gz, glam, gnu):
    """d(<gz, z> + <glam, lam> + <gnu, nu>)/dparams from the KKT system F = (Qs z + c + G'lam + A'nu,
    lam * (Gz - h), Az - b): w = J^-T (gz, glam, gnu), then -(dF/dparam)' w.

    Qs = (Q + Q')/2 is what the objective 0.5 z'Qz sees, so with Q's entries independent (LANGUAGE.md)
    dQ is the symmetric part of -wz z'."""
    Q, G, h, A = p["Q"], p["G"], p["h"], p["A"]
    n, m, k = len(z), len(lam), len(nu)
    J = np.block([
        [Q, G.T, A.T],
        [lam[:, None] * G, np.diag(G @ z - h), np.zeros((m, k))],
        [A, np.zeros((k, m)), np.zeros((k, k))],
    ])
    w = np.linalg.solve(J.T, np.concatenate([gz, glam, gnu]))
    wz, wl, wn = w[:n], w[n:n + m], w[n + m:]
    return {"Q": -0.5 * (np.outer(wz, z) + np.outer(z, wz)), "c": -wz,
            "G": -(np.outer(lam, wz) + np.outer(wl * lam, z)), "h": wl * lam,
            "A": -(np.outer(nu, wz) + np.outer(wn, z)), "b": wn}


def sample_portfolio(rng, size, given=None):
    n = size["n"]
    w, support = _simplex_point(rng, n)
    Sigma = _given(given, "Sigma", lambda: spd(rng, n, 0.5, 5.0))
    gamma = _given(given, "gamma", lambda: rng.uniform(0.5, 3.0))
    lam = np.where(support, 0.0, rng.uniform(MARGIN, 2.0, n))
    nu = rng.standard_normal()
    # As minimize -mu'w + 0.5 gamma w'Sigma w: -mu + gamma Sigma w - lam + nu 1 = 0.
    return {"mu": gamma * Sigma @ w - lam + nu, "Sigma": Sigma, "gamma": gamma}, {"w": w, "long": lam, "budget": nu}


def portfolio_as_qp(p):
    n = p["mu"].shape[0]
    return {"Q": p["gamma"] * p["Sigma"], "c": -p["mu"], "G": -np.eye(n), "h": np.zeros(n), "A": np.ones((1, n)),
            "b": np.ones(1)}


def portfolio_cvxpy(p):
    """(w, budget dual, long dual): cvxpy gives a maximize's duals as those of minimizing the negation."""
    w = cp.Variable(p["mu"].shape[0])
    budget, long = cp.sum(w) == 1, w >= 0
    risk = cp.quad_form(w, cp.psd_wrap(p["Sigma"]))
    cvxpy_solve(cp.Problem(cp.Maximize(p["mu"] @ w - 0.5 * p["gamma"] * risk), [budget, long]))
    return w.value, float(budget.dual_value), long.dual_value


def vjp_portfolio(p, w, long, budget, gw, glong, gbudget):
    """The QP's VJP, chained through Q = gamma Sigma, c = -mu."""
    q = vjp_qp(portfolio_as_qp(p), w, long, np.atleast_1d(budget), gw, glong, np.atleast_1d(gbudget))
    return {"mu": -q["c"], "Sigma": p["gamma"] * q["Q"], "gamma": np.asarray(np.sum(q["Q"] * p["Sigma"]))}


# -- svm (the Crammer-Singer dual) ---------------------------------------------------------------
def sample_svm(rng, size, given=None):
    """m <= d keeps X X' (so the Hessian on the simplices) nonsingular; lam in [5, 10] and X's singular
    values in [1, 2] keep I - X X'/lam well conditioned, and Y solves for the planted gradient."""
    m, d, k = size["m"], size["d"], size["k"]
    X = _given(given, "X", lambda: conditioned(rng, m, d, cond_max=2.0))
    lam = _given(given, "lam", lambda: rng.uniform(5.0, 10.0))
    beta, grad = np.empty((m, k)), np.empty((m, k))
    for i in range(m):
        beta[i], support = _simplex_point(rng, k)
        tau = rng.uniform(-1.0, 1.0)
        grad[i] = np.where(support, -tau, -tau + rng.uniform(MARGIN, 2.0, k))
    K = X @ X.T / lam
    # grad f(beta) = -K (Y - beta) + Y = (I - K) Y + K beta.
    Y = np.linalg.solve(np.eye(m) - K, grad - K @ beta)
    return {"X": X, "Y": Y, "lam": lam}, {"beta": beta}


def svm_cvxpy(p):
    X, Y, lam = p["X"], p["Y"], float(p["lam"])
    beta = cp.Variable(Y.shape)
    f = 0.5 / lam * cp.sum_squares(X.T @ (Y - beta)) + cp.sum(cp.multiply(beta, Y))
    cvxpy_solve(cp.Problem(cp.Minimize(f), [beta >= 0, cp.sum(beta, axis=1) == 1]))
    return beta.value


def svm_active_set(p, support):
    """The exact solution for known row supports: beta = 0 off them, rows summing to 1; vec row-major."""
    X, Y, lam = p["X"], p["Y"], float(p["lam"])
    m, k = Y.shape
    K = X @ X.T / lam
    H = np.kron(K, np.eye(k))
    q = (Y - K @ Y).reshape(-1)
    rows = [np.kron(np.eye(m)[i], np.ones(k)) for i in range(m)]
    rows += [np.eye(m * k)[j] for j in np.flatnonzero(~support.reshape(-1))]
    E = np.array(rows)
    e = np.concatenate([np.ones(m), np.zeros(E.shape[0] - m)])
    return eq_qp(H, q, E, e)[0].reshape(m, k)


# -- deq -----------------------------------------------------------------------------------------
def sample_deq(rng, size, given=None):
    d, k = size["d"], size["k"]
    W = rng.standard_normal((d, d))
    W *= rng.uniform(0.1, 0.5) / np.linalg.norm(W, 2)  # contractive: spectral norm <= 0.5
    W = _given(given, "W", lambda: W)
    return {"W": W, "U": rng.standard_normal((d, k)), "u": rng.standard_normal(k), "bias": rng.standard_normal(d)}, {}


def deq_iterate(p):
    """Plain fixed-point iteration z <- tanh(W z + U u + bias), a contraction, to the last digits."""
    W, a = p["W"], p["U"] @ p["u"] + p["bias"]
    z = np.zeros(len(a))
    for _ in range(1000):
        new = np.tanh(W @ z + a)
        if np.abs(new - z).max() <= 2 * EPS64:
            return new
        z = new
    return z


def vjp_deq(p, z, g):
    """F = z - tanh(a), a = Wz + Uu + bias, D = diag(1 - tanh(a)^2): q = D (I - W'D)^-1 g, then
    dW = q z', dU = q u', du = U'q, dbias = q."""
    W, U, u = p["W"], p["U"], p["u"]
    D = 1.0 - z ** 2  # tanh(a) = z at the fixed point
    q = D * np.linalg.solve(np.eye(len(z)) - W.T * D, g)
    return {"W": np.outer(q, z), "U": np.outer(q, u), "u": U.T @ q, "bias": q}


# -- projections with closed forms ---------------------------------------------------------------
def sample_ball(rng, size, given=None):
    """x0 and r with |x0| at least 1.5 times r away from the sphere (outside: active, inside: inactive)."""
    x0 = rng.standard_normal(size["n"])
    x0 *= rng.uniform(0.5, 2.0) / max(np.linalg.norm(x0), 1e-3)
    ratio = rng.uniform(1.5, 3.0)
    outside = bool(rng.random() < 0.7)
    return {"x0": x0, "r": np.linalg.norm(x0) / ratio if outside else np.linalg.norm(x0) * ratio}, {}


def ball(p):
    """(x, dual of sumsq(x) <= r^2): the projection r x0 / |x0| outside, x0 inside; x - x0 + 2 lam x = 0."""
    x0, r = p["x0"], float(p["r"])
    norm = np.linalg.norm(x0)
    if norm <= r:
        return x0.copy(), 0.0
    return r * x0 / norm, 0.5 * (norm / r - 1.0)


def vjp_ball(p, x, g):
    """Outside: dx/dx0 = (r/|x0|)(I - u u'), dx/dr = u (u = x0/|x0|); inside: the identity and 0."""
    x0, r = p["x0"], float(p["r"])
    norm = np.linalg.norm(x0)
    if norm <= r:
        return {"x0": g.copy(), "r": np.asarray(0.0)}
    u = x0 / norm
    return {"x0": (r / norm) * (g - u * (u @ g)), "r": np.asarray(u @ g)}


def sample_exp_cap(rng, size, given=None):
    """x0 and c > 0 with log c at least MARGIN from x0 on either side (caps far below the start x = 0
    are covered by test_exp_cap_far_below_the_start)."""
    n = size["n"]
    x0 = rng.uniform(-3.0, 1.5, n)
    gap = rng.choice([-1.0, 1.0], n) * rng.uniform(MARGIN, 1.0, n)
    return {"x0": x0, "c": np.exp(x0 + gap)}, {}


def exp_cap(p):
    """(x, dual of exp(x) <= c) = (min(x0, log c), (x0 - x) / c): x - x0 + lam exp(x) = 0."""
    x = np.minimum(p["x0"], np.log(p["c"]))
    return x, (p["x0"] - x) / p["c"]


def vjp_exp_cap(p, x, g):
    active = p["x0"] > np.log(p["c"])
    return {"x0": np.where(active, 0.0, g), "c": np.where(active, g / p["c"], 0.0)}
