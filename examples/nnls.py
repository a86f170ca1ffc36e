"""Nonnegative least squares on a batch; gradients w.r.t. A and b through the active set."""
import pathlib

import torch

import optlang

torch.manual_seed(0)
nnls = optlang.compile(pathlib.Path(__file__).with_name("nnls.opt"))

batch, m, n = 16, 64, 32
A = torch.randn(batch, m, n, dtype=torch.float64, requires_grad=True)
b = torch.randn(batch, m, dtype=torch.float64, requires_grad=True)

sol = nnls.solve(A=A, b=b)
x = sol.x
print("x[0] =", x[0, :8].detach().numpy().round(4), "...")
print("active constraints per problem:", (x == 0).sum(-1).tolist())
print("all converged:", sol.stats.all_converged, "max residual:", float(sol.stats.residual.max()))

x.sum().backward()
print("d sum(x) / d b[0] =", b.grad[0, :6].numpy().round(4), "...")
print("|d sum(x) / d A| =", float(A.grad.norm()))
