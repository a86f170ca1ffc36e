"""Mean-variance portfolios with a budget and long-only positions; the budget's dual and its gradient."""
import pathlib

import torch

import optlang

torch.manual_seed(0)
portfolio = optlang.compile(pathlib.Path(__file__).with_name("portfolio.opt"))

batch, n = 16, 12
F = torch.randn(batch, n, 3, dtype=torch.float64)
Sigma = F @ F.transpose(-1, -2) / 3 + 0.05 * torch.eye(n, dtype=torch.float64)
mu = (0.05 + 0.1 * torch.rand(batch, n, dtype=torch.float64)).requires_grad_()
gamma = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)

sol = portfolio.solve(mu=mu, Sigma=Sigma, gamma=gamma)
print("weights[0] =", sol.w[0].detach().numpy().round(4))
print("assets held per portfolio:", (sol.w > 1e-8).sum(-1).tolist())
print("budget dual (marginal utility of capital):", sol.duals["budget"][:4].detach().numpy().round(5))
expected_return = (mu * sol.w).sum(-1)
expected_return.sum().backward()
print("d return / d gamma =", float(gamma.grad))
print("d return / d mu[0] =", mu.grad[0].numpy().round(4))
