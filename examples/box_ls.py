"""Box-constrained least squares with parameter bounds: gradients reach the bounds too."""
import pathlib

import torch

import optlang

torch.manual_seed(0)
box = optlang.compile(pathlib.Path(__file__).with_name("box_ls.opt"))

batch, m, n = 8, 30, 10
A = torch.randn(batch, m, n, dtype=torch.float64, requires_grad=True)
b = 3 * torch.randn(batch, m, dtype=torch.float64)
lo = torch.full((n,), -0.2, dtype=torch.float64, requires_grad=True)  # shared bounds
hi = torch.full((n,), 0.2, dtype=torch.float64, requires_grad=True)

x = box(A=A, b=b, lo=lo, hi=hi)
print("x[0] =", x[0].detach().numpy().round(3))
print("at lower / upper bound:", int((x == lo).sum()), "/", int((x == hi).sum()), "of", x.numel())
x.sum().backward()
print("d sum(x) / d lo =", lo.grad.numpy().round(3))
print("d sum(x) / d hi =", hi.grad.numpy().round(3))
