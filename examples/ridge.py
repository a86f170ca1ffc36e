"""Ridge regression on a batch: solutions match the closed form; gradients reach X, y and lam."""
import pathlib

import torch

import optlang

torch.manual_seed(0)
ridge = optlang.compile(pathlib.Path(__file__).with_name("ridge.opt"))

batch, n, d = 8, 20, 5
X = torch.randn(batch, n, d, dtype=torch.float64, requires_grad=True)
y = torch.randn(batch, n, dtype=torch.float64, requires_grad=True)
lam = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)  # shared by the whole batch

w = ridge(X=X, y=y, lam=lam)
closed = torch.linalg.solve(X.mT @ X + lam * torch.eye(d, dtype=X.dtype), (X.mT @ y[..., None]))[..., 0]
print("w[0] =", w[0].detach().numpy().round(4))
print("max |w - closed form| =", float((w - closed).abs().max().detach()))

w.square().sum().backward()  # any loss of the solution
print("d loss / d lam =", float(lam.grad), "(summed over the batch)")
print("d loss / d y[0] =", y.grad[0, :5].numpy().round(4), "...")
