"""The OptNet QP layer on a batch: solution, duals under their labels, gradients w.r.t. all the data."""
import pathlib

import torch

import optlang

torch.manual_seed(0)
qp = optlang.compile(pathlib.Path(__file__).with_name("qp.opt"))

batch, n, m, p = 32, 10, 6, 2
L = torch.randn(batch, n, n, dtype=torch.float64)
Q = L @ L.transpose(-1, -2) / n + 0.5 * torch.eye(n, dtype=torch.float64)  # symmetric positive definite
c = torch.randn(batch, n, dtype=torch.float64, requires_grad=True)
G = torch.randn(batch, m, n, dtype=torch.float64, requires_grad=True)
h = torch.rand(batch, m, dtype=torch.float64, requires_grad=True)  # z = 0 is strictly feasible for G z <= h
A = torch.randn(batch, p, n, dtype=torch.float64, requires_grad=True)
b = torch.zeros(batch, p, dtype=torch.float64, requires_grad=True)

sol = qp.solve(Q=Q, c=c, G=G, h=h, A=A, b=b)
print("z[0] =", sol.z[0].detach().numpy().round(4))
print("active inequalities per problem:", (sol.duals["ineq"] > 1e-8).sum(-1).tolist())
print("status:", set(sol.stats.status_names()), "iterations:", sol.stats.iterations.max().item())

# A loss on the solution and on the duals: both are differentiable.
(sol.z.sum() + sol.duals["eq"].sum()).backward()
print("d loss / d h[0] =", h.grad[0].numpy().round(4))
print("|d loss / d G| =", float(G.grad.norm()), " |d loss / d c| =", float(c.grad.norm()))
