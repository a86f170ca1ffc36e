"""sparsemax as a layer: sparse probabilities, and its Jacobian against the closed form."""
import pathlib

import torch

import optlang

torch.manual_seed(0)
sparsemax = optlang.compile(pathlib.Path(__file__).with_name("sparsemax.opt"))

logits = 0.5 * torch.randn(8, 10, dtype=torch.float64, requires_grad=True)
probs = sparsemax(v=logits)
print("probabilities[0] =", probs[0].detach().numpy().round(4))
print("nonzeros per row:", (probs > 0).sum(-1).tolist(), " row sums:", probs.sum(-1).detach().numpy().round(12))

# d probs[0] / d logits[0] is diag(s) - s s' / |S| (s the support): compare with autograd through optlang.
J = torch.autograd.functional.jacobian(lambda v: sparsemax(v=v), logits[0].detach())
s = (probs[0] > 0).double()
closed = torch.diag(s) - torch.outer(s, s) / s.sum()
print("Jacobian error vs closed form:", float((J - closed).abs().max()))
