"""Task-driven dictionary learning: a dictionary trained through its sparse codes (JAXopt paper, sec. 4).

After Mairal et al.'s task-driven dictionary learning, as in sec. 4 of Blondel et al., "Efficient and
Modular Implicit Differentiation". Each sample x (a row of scikit-learn's bundled breast-cancer data:
569 samples, 30 features, standardized by the training set's statistics) is coded in a dictionary D of
k = 8 atoms by the elastic net (paper_dictionary.opt); one call codes the whole set, D shared by
broadcasting. A logistic regression (weights, bias) on the codes predicts the diagnosis, and D is
learned jointly with it by full-batch Adam on the training cross-entropy, whose gradient in D runs
through the codes by the implicit function theorem on the proximal-gradient fixed point. The atoms
(columns of D) are projected back to unit norm after each step, as is standard: otherwise the norm1
penalty could be dodged by growing D and shrinking the codes.

Compared on held-out accuracy and ROC AUC (stratified 70/30 splits, random_state 0, 1, ...) with
(a) the codes in the fixed random dictionary that D starts from, same outer model, loss and steps, and
(b) plain logistic regression on the raw 30 features, same loss and steps. The settings (k, lam1,
lam2, weight decay) were picked by hand after a small look at split 0 (k 8/16/32, lam1 0.2/0.5/1),
with no separate validation set. This data set is close to
linearly separable, so (b) is a strong baseline; the comparison the example makes is between (a) and
the learned dictionary at a k below the number of features, where random codes lose information.
Prints the mean and spread over the splits; saves paper_dictionary.png next to this file (or where
--out says): the outer (training) loss of the three against the Adam steps and their test ROC curves,
on the first split. Needs matplotlib and scikit-learn (`pip install "optlang-diff[examples]"`).

    python examples/paper_dictionary.py            # 5 splits x 300 steps: about 1 minute on 2 CPU cores
    python examples/paper_dictionary.py --quick    # 1 split x 60 steps, the reduced run CI makes: about 7 s

CUDA is used when present. On CPU torch runs on one thread: the tensors are small (a few hundred
30 x 8 problems per call), and waking a second thread costs more than it saves.
"""
import argparse
import pathlib
import time

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split

import optlang
from _outer import Progress, device, pyplot

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default=str(pathlib.Path(__file__).with_name("paper_dictionary.png")))
parser.add_argument("--quick", action="store_true", help="the reduced size CI runs: 1 split, 60 steps")
parser.add_argument("--steps", type=int, default=None, help="Adam steps per model (default 300; 60 with --quick)")
parser.add_argument("--splits", type=int, default=None, help="train/test splits (default 5; 1 with --quick)")
parser.add_argument("--atoms", type=int, default=8, help="dictionary size k (default 8)")
parser.add_argument("--lam1", type=float, default=0.5, help="the elastic net's norm1 weight (default 0.5)")
parser.add_argument("--lam2", type=float, default=0.1, help="the elastic net's ridge weight (default 0.1)")
parser.add_argument("--decay", type=float, default=1e-2, help="the outer model's weight decay (default 1e-2)")
args = parser.parse_args()
steps = args.steps if args.steps is not None else (60 if args.quick else 300)
splits = args.splits if args.splits is not None else (1 if args.quick else 5)

started = time.perf_counter()
dev = device(one_cpu_thread=True)
dtype = torch.float64
coder = optlang.compile(pathlib.Path(__file__).with_name("paper_dictionary.opt"))
X_all, y_all = load_breast_cancer(return_X_y=True)
k = args.atoms
NAMES = (f"task-driven dictionary (k = {k})", f"fixed random dictionary (k = {k})",
         f"logistic regression on the raw features ({X_all.shape[1]})")


def unit_columns(D):
    return D / D.norm(dim=0, keepdim=True)


def codes(D, X, init=None):
    """The elastic-net codes of the rows of X in D, one batched solve: the Solution (codes, stats, warm start)."""
    return coder.solve(D=D, x=X, lam1=args.lam1, lam2=args.lam2, init=init)


def outer_loss(features, w, b, y):
    """The outer model's loss: logistic regression with a little weight decay, the same for the three."""
    logits = features @ w + b
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + args.decay * (w * w).sum()


def zeros(*shape):
    return torch.zeros(shape, dtype=dtype, device=dev, requires_grad=True)


def fit_outer(features, y):
    """The outer model alone on fixed features, by the same Adam steps: (w, b, loss history)."""
    w, b = zeros(features.shape[1]), zeros()
    opt = torch.optim.Adam([w, b], lr=0.05)
    history = []
    for _ in range(steps):
        loss = outer_loss(features, w, b, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    return w.detach(), b.detach(), history


def experiment(split):
    """One train/test split: the three models' test scores and training-loss histories."""
    X_tr, X_te, y_tr, y_te = train_test_split(X_all, y_all, test_size=0.3, stratify=y_all, random_state=split)
    mean, std = X_tr.mean(0), X_tr.std(0)
    X_tr, X_te = (torch.tensor((a - mean) / std, dtype=dtype, device=dev) for a in (X_tr, X_te))
    y_tr = torch.tensor(y_tr, dtype=dtype, device=dev)
    torch.manual_seed(split)
    D0 = unit_columns(torch.randn(X_tr.shape[1], k, dtype=dtype, device=dev))

    # Task-driven: D and the outer model together, the gradient in D through the codes.
    D, w, b = D0.clone().requires_grad_(), zeros(k), zeros()
    optimizer = torch.optim.Adam([{"params": [D], "lr": 0.02}, {"params": [w, b], "lr": 0.05}])
    progress = Progress(steps, f"split {split}: task-driven D")
    history, start = [], None
    for step in range(steps):
        sol = codes(D, X_tr, init=start)  # full batch, the same samples every step: warm-start them
        start = sol.warm_start()
        loss = outer_loss(sol.a, w, b, y_tr)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            D.copy_(unit_columns(D))  # project the atoms back to unit norm
        history.append(float(loss.detach()))
        progress.update(step, loss=history[-1], nonzeros=float((sol.a != 0).double().sum(-1).mean()),
                        inner_iterations=int(sol.stats.iterations.max()))

    # The baselines: (a) the codes in the fixed dictionary D0, (b) the raw features.
    with torch.no_grad():
        A0_tr, A0_te, A_te = codes(D0, X_tr).a, codes(D0, X_te).a, codes(D.detach(), X_te).a
    w0, b0, history_random = fit_outer(A0_tr, y_tr)
    w_raw, b_raw, history_raw = fit_outer(X_tr, y_tr)
    scores = [A_te @ w.detach() + b.detach(), A0_te @ w0 + b0, X_te @ w_raw + b_raw]
    return y_te, [s.cpu().numpy() for s in scores], [history, history_random, history_raw]


results = [experiment(split) for split in range(splits)]
accuracy = np.array([[((s > 0) == y).mean() for s in scores] for y, scores, _ in results])
auc = np.array([[roc_auc_score(y, s) for s in scores] for y, scores, _ in results])
spread = f" (mean +- std over {splits} splits)" if splits > 1 else ""
print(f"\nheld-out results{spread}, {len(results[0][0])} test samples per split")
print(f"{'model':50s} {'accuracy':>8s}{'':9s} {'ROC AUC':>8s}")
for j, name in enumerate(NAMES):
    acc_std, auc_std = (f" +- {accuracy[:, j].std():.3f}", f" +- {auc[:, j].std():.4f}") if splits > 1 else ("", "")
    print(f"{name:50s} {accuracy[:, j].mean():8.3f}{acc_std:9s} {auc[:, j].mean():8.4f}{auc_std:10s}")
print(f"wall time {time.perf_counter() - started:.1f} s on {dev}")

plt = pyplot()
fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.2))
y_te, scores, histories = results[0]
for name, history, style in zip(NAMES, histories, ("-", "--", ":")):
    left.plot(history, style, label=name)
left.set_xlabel("Adam step (full batch)")
left.set_ylabel("training loss (cross-entropy + weight decay)")
left.set_title("outer loss, split 0")
left.legend(fontsize=8)
for name, s, style in zip(NAMES, scores, ("-", "--", ":")):
    fpr, tpr, _ = roc_curve(y_te, s)
    right.plot(fpr, tpr, style, label=f"{name}: AUC {roc_auc_score(y_te, s):.3f}")
right.plot([0, 1], [0, 1], color="gray", linewidth=0.5)
right.set_xlabel("false positive rate")
right.set_ylabel("true positive rate")
right.set_title(f"test ROC, split 0 ({len(y_te)} held-out samples)")
right.legend(fontsize=8, loc="lower right")
fig.suptitle("breast cancer: task-driven dictionary learning through optlang's elastic-net codes")
fig.tight_layout()
fig.savefig(args.out, dpi=120)
print("saved", args.out)
