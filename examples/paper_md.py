"""How a jammed soft-sphere packing moves when its discs grow (JAXopt paper, sec. 4, "molecular dynamics").

The packing is the minimum of the energy in paper_md.opt: N discs of two sizes (1 : 1.4, half
each) in the unit box, pairwise harmonic repulsion where discs overlap, soft walls. optlang finds
it by Newton (with the Hessian made positive definite where it is not: the energy is nonconvex and
the minimum a local one) and differentiates it in the diameter scale sigma by the implicit
function theorem, here in forward mode (`torch.func.jvp`): dx/dsigma, one tangent solve, for all
2N coordinates at once.

The script sweeps the packing fraction upward, each packing warm-started from the last, and at
each checks dx/dsigma against central finite differences of re-solved packings (warm-started at
the packing itself, so both sides find the same local minimum). It prints the energy and that
agreement as it goes and saves paper_md.png: the last packing with the sensitivity arrows, and
the finite-difference agreement along the sweep.

    python examples/paper_md.py            # N = 48, 5 packing fractions: about a minute here (2 CPU cores)
    python examples/paper_md.py --quick    # N = 12, 2 fractions: what CI runs, a few seconds
"""
import argparse
import math
import pathlib

import torch

import optlang
from _outer import Progress, device, pyplot

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--n", type=int, default=48, help="number of discs")
parser.add_argument("--fractions", type=int, default=5, help="packing fractions in the sweep")
parser.add_argument("--quick", action="store_true", help="the reduced size CI runs")
parser.add_argument("--out", default=str(pathlib.Path(__file__).with_name("paper_md.png")))
args = parser.parse_args()
if args.quick:
    args.n, args.fractions = 12, 2

torch.manual_seed(0)
dev, dtype = device(), torch.float64  # float64: the finite differences need it
packing = optlang.compile(pathlib.Path(__file__).with_name("paper_md.opt"))
N = args.n
s = torch.where(torch.arange(N) % 2 == 0, 1.0, 1.4).to(dev, dtype)  # relative diameters
x0 = torch.rand(N, 2, device=dev, dtype=dtype)  # the start: random, the discs overlap everywhere
fixed = dict(x0=x0, s=s, L=torch.tensor(1.0, device=dev, dtype=dtype),
             k=torch.tensor(1e-4, device=dev, dtype=dtype))  # the tether that pins rattlers (see .opt)


def diameter_scale(fraction: float) -> float:
    """sigma such that the discs cover `fraction` of the unit box."""
    return math.sqrt(fraction / (math.pi / 4 * float((s * s).sum())))


fractions = torch.linspace(0.86, 0.92, args.fractions).tolist()
progress = Progress(len(fractions), "packing sweep", every=1)
u, records = torch.zeros_like(x0), []
for step, fraction in enumerate(fractions):
    sigma = torch.tensor(diameter_scale(fraction), device=dev, dtype=dtype)
    sol = packing.solve(**fixed, sigma=sigma, init={"u": u})
    u = sol.u
    # dx/dsigma = du/dsigma by forward mode through the implicit derivative, at this packing.
    _, dx = torch.func.jvp(lambda t: packing(**fixed, sigma=t, init={"u": u}), (sigma,), (torch.ones_like(sigma),))
    h = 1e-6 * float(sigma)
    plus = packing.solve(**fixed, sigma=sigma + h, init={"u": u}, tol=1e-12).u
    minus = packing.solve(**fixed, sigma=sigma - h, init={"u": u}, tol=1e-12).u
    fd = (plus - minus) / (2 * h)
    agreement = float((dx - fd).abs().max() / fd.abs().max())
    records.append((fraction, float(sol.objective), int(sol.stats.iterations), agreement))
    progress.update(step, fraction=fraction, energy=float(sol.objective), newton_iters=int(sol.stats.iterations),
                    fd_rel_err=agreement, status=sol.stats.status_names())
x = x0 + u

print(f"dx/dsigma vs central finite differences (max abs difference / max abs): "
      f"worst {max(r[3] for r in records):.2e} over {len(records)} packings of {N} discs")

plt = pyplot()
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4.4), gridspec_kw={"width_ratios": [1.2, 1]})
positions, arrows = x.detach().cpu().numpy(), dx.detach().cpu().numpy()
radii = (0.5 * float(sigma) * s).cpu().numpy()
for (px, py), radius in zip(positions, radii):
    left.add_patch(plt.Circle((px, py), radius, color="tab:blue" if radius < radii.max() else "tab:orange",
                              alpha=0.45, linewidth=0))
left.quiver(positions[:, 0], positions[:, 1], arrows[:, 0], arrows[:, 1], angles="xy", scale_units="xy",
            scale=float(abs(arrows).max()) / 0.08, width=0.005, color="black")
left.set_xlim(0, 1)
left.set_ylim(0, 1)
left.set_aspect("equal")
left.set_title(f"packing at fraction {fractions[-1]:.2f}, arrows dx/dsigma")
right.semilogy([r[0] for r in records], [max(r[3], 1e-16) for r in records], marker="o")
right.set_xlabel("packing fraction")
right.set_ylabel("|IFT - finite diff.| / |finite diff.|")
right.set_title("implicit derivative vs re-solved packings")
fig.tight_layout()
fig.savefig(args.out, dpi=120)
print("saved", args.out)
