"""Lasso on a batch: sparse solutions and the gradient of a validation loss w.r.t. lam."""
import pathlib

import torch

import optlang

torch.manual_seed(0)
lasso = optlang.compile(pathlib.Path(__file__).with_name("lasso.opt"))

batch, n, d = 8, 40, 20
w_true = torch.randn(batch, d, dtype=torch.float64) * (torch.rand(batch, d) < 0.3)
X = torch.randn(batch, n, d, dtype=torch.float64)
y = (X @ w_true[..., None])[..., 0] + 0.1 * torch.randn(batch, n, dtype=torch.float64)
X_val = torch.randn(batch, n, d, dtype=torch.float64)
y_val = (X_val @ w_true[..., None])[..., 0]

lam = torch.full((batch,), 2.0, dtype=torch.float64, requires_grad=True)
sol = lasso.solve(X=X, y=y, lam=lam)
w = sol.w
print("nonzeros per problem:", (w.abs() > 0).sum(-1).tolist(), "of", d)
print("converged:", sol.stats.all_converged, " iterations:", sol.stats.iterations.tolist())
val = ((X_val @ w[..., None])[..., 0] - y_val).square().mean(-1)
val.sum().backward()
print("validation loss:", val.detach().numpy().round(4))
print("d val / d lam:", lam.grad.numpy().round(5))
