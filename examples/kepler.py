"""Kepler's equation E - e sin E = M as a root problem; derivatives match the closed forms."""
import pathlib

import torch

import optlang

kepler = optlang.compile(pathlib.Path(__file__).with_name("kepler.opt"))

M = torch.linspace(0.1, 3.0, 6, dtype=torch.float64, requires_grad=True)
e = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
E = kepler(M=M, e=e)
print("E =", E.detach().numpy().round(6))
print("residual:", float((E - e * torch.sin(E) - M).abs().max().detach()))

dE_dM, = torch.autograd.grad(E.sum(), M, retain_graph=True)
print("dE/dM      =", dE_dM.numpy().round(6))
print("1/(1-e cos E) =", (1 / (1 - e * torch.cos(E))).detach().numpy().round(6))
dE_de, = torch.autograd.grad(E.sum(), e)
print("dE/de (summed) =", float(dE_de), "closed form:", float((torch.sin(E) / (1 - e * torch.cos(E))).sum().detach()))
