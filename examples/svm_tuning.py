"""Tune the multiclass SVM's regularization by gradient descent on a validation loss (JAXopt paper, sec. 4).

The inner problem is the SVM's dual (svm.opt); optlang differentiates its solution w.r.t. lam by the
implicit function theorem on the simplex-projected-gradient fixed point. The outer loop descends
on log(lam). Saves svm_tuning.png (validation loss against the outer iterations) next to this file,
or where --out says; needs matplotlib (`pip install "optlang-diff[examples]"`).
"""
import argparse
import pathlib

import torch

import optlang

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default=str(pathlib.Path(__file__).with_name("svm_tuning.png")))
parser.add_argument("--steps", type=int, default=25)
args = parser.parse_args()

torch.manual_seed(0)
svm = optlang.compile(pathlib.Path(__file__).with_name("svm.opt"))
m, m_val, d, k = 120, 200, 10, 4
centers = 1.2 * torch.randn(k, d, dtype=torch.float64)


def draw(count):
    labels = torch.randint(0, k, (count,))
    return centers[labels] + torch.randn(count, d, dtype=torch.float64), labels


X, y = draw(m)
X_val, y_val = draw(m_val)
Y = torch.nn.functional.one_hot(y, k).to(torch.float64)

log_lam = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)  # start heavily regularized
optimizer = torch.optim.Adam([log_lam], lr=0.3)
history = []
for step in range(args.steps):
    lam = log_lam.exp()
    beta = svm(X=X, Y=Y, lam=lam)
    W = X.T @ (Y - beta) / lam  # the primal weights from the dual solution
    val_loss = torch.nn.functional.cross_entropy(X_val @ W, y_val)
    optimizer.zero_grad()
    val_loss.backward()
    optimizer.step()
    accuracy = float(((X_val @ W).argmax(-1) == y_val).double().mean())
    history.append(float(val_loss))
    print(f"step {step:2d}  lam = {float(lam):8.4f}  validation loss = {float(val_loss):.4f}  accuracy = {accuracy:.3f}")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    raise SystemExit("svm_tuning.py: saving the plot needs matplotlib: pip install matplotlib") from None
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(range(len(history)), history, marker="o", markersize=3)
ax.set_xlabel("outer iteration (Adam on log lam)")
ax.set_ylabel("validation cross-entropy")
ax.set_title("multiclass SVM: tuning lam through optlang")
fig.tight_layout()
fig.savefig(args.out, dpi=120)
print("saved", args.out)
