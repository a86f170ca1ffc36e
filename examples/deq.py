"""A deep-equilibrium layer: Anderson acceleration forward, implicit backward; backward methods compared."""
import pathlib

import torch

import optlang

torch.manual_seed(0)
deq = optlang.compile(pathlib.Path(__file__).with_name("deq.opt"))

batch, d, k = 64, 16, 8
W = torch.randn(d, d, dtype=torch.float64)
W = (0.8 * W / torch.linalg.matrix_norm(W, 2)).requires_grad_()  # a contraction: a unique equilibrium
U = torch.randn(d, k, dtype=torch.float64, requires_grad=True)
u = torch.randn(batch, k, dtype=torch.float64)
bias = torch.zeros(d, dtype=torch.float64, requires_grad=True)

sol = deq.solve(W=W, U=U, u=u, bias=bias)
print("iterations (Anderson):", sol.stats.iterations.float().mean().item(), "on average")
print("residual:", float(sol.stats.residual.max()))
for backward in ("direct", "gmres", "neumann", "unroll"):
    z = deq(W=W, U=U, u=u, bias=bias, backward=backward)
    gW, gU = torch.autograd.grad(z.square().sum(), (W, U))
    print(f"backward={backward:8s} |dL/dW| = {float(gW.norm()):.10f}  |dL/dU| = {float(gU.norm()):.10f}")
