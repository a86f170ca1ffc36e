"""Elastic net: norm1 through its prox, the ridge term in the smooth part; gradients w.r.t. both penalties."""
import pathlib

import torch

import optlang

torch.manual_seed(0)
enet = optlang.compile(pathlib.Path(__file__).with_name("elastic_net.opt"))

batch, n, d = 4, 30, 12
X = torch.randn(batch, n, d, dtype=torch.float64)
y = torch.randn(batch, n, dtype=torch.float64)
lam1 = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)  # shared by the batch: gradients sum
lam2 = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)

w = enet(X=X, y=y, lam1=lam1, lam2=lam2)
print("w[0] =", w[0].detach().numpy().round(4))
print("zeros per problem:", (w == 0).sum(-1).tolist())
w.abs().sum().backward()
print("d |w|_1 / d lam1 =", float(lam1.grad), " d |w|_1 / d lam2 =", float(lam2.grad))
