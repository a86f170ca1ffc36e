"""L2-regularized logistic regression: the gradient of a validation loss w.r.t. the penalty lam."""
import pathlib

import torch

import optlang

torch.manual_seed(0)
logistic = optlang.compile(pathlib.Path(__file__).with_name("logistic.opt"))

batch, n, d = 4, 50, 6
w_true = torch.randn(batch, d, dtype=torch.float64)
X = torch.randn(batch, n, d, dtype=torch.float64)
y = (torch.sigmoid(X @ w_true[..., None])[..., 0] > torch.rand(batch, n, dtype=torch.float64)).double()
X_val = torch.randn(batch, n, d, dtype=torch.float64)
y_val = (torch.sigmoid(X_val @ w_true[..., None])[..., 0] > 0.5).double()

lam = torch.full((batch,), 0.1, dtype=torch.float64, requires_grad=True)  # one penalty per problem
sol = logistic.solve(X=X, y=y, lam=lam)
w = sol.w
margin = (X_val @ w[..., None])[..., 0]
val_loss = torch.nn.functional.binary_cross_entropy_with_logits(margin, y_val, reduction="none").mean(-1)
val_loss.sum().backward()
print("converged:", sol.stats.converged.tolist(), "iterations:", sol.stats.iterations.tolist())
print("validation loss:", val_loss.detach().numpy().round(4))
print("d val_loss / d lam:", lam.grad.numpy().round(5))
