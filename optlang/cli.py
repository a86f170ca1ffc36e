"""The `optlang` command: check, ir, conditions, emit and solve a `.opt` file.

Exit status: 0 success, 1 a problem in the user's file or data (printed to
stderr as `file:line:col` with a caret, never a traceback), 2 bad usage
(argparse's own status). Heavy modules (torch, sympy) are imported by the
subcommand that needs them, so `--help` answers at once.
"""
from __future__ import annotations

import argparse
import sys
import textwrap

from optlang import __version__
from optlang.errors import CallError, OptError

OK, USER_ERROR, USAGE = 0, 1, 2

EPILOG = """\
exit status: 0 success, 1 a problem in the .opt file or the data (printed to
stderr, no traceback), 2 bad usage."""

SOLVE_EPILOG = """\
The .npz archive holds one array per parameter, stored under the parameter's
name (np.savez("params.npz", X=X, y=y, lam=0.5)); leading batch dims broadcast
as in Python. Integer arrays are converted to --dtype. Every parameter must be
present and no other array may be.

--out writes each var under its name plus the per-batch-element stats
`converged` (bool), `iterations` (int) and `residual` (float); duals, where
the problem has labelled constraints, go under their labels. A var named like
a stats entry pushes the stats to `stats_converged`, ... instead.

A solve that does not converge prints a warning naming the batch elements and
still exits 0 (its stats say so); 1 is kept for errors in the file or data.
The solve runs on the CPU, or on CUDA with --backend triton where CUDA is present.

""" + EPILOG


class UserError(Exception):
    """A problem with a file the user gave (unreadable, not an archive): exit status 1."""

    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `optlang` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="optlang",
        description="A compiler for differentiable optimization: print each stage of compiling a .opt\n"
        "file, or solve it on data.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"optlang {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add(sub, "check", "parse and check one or more files; print `FILE: ok (...)` for each",
         "Parse, type-check and run every compile-time pass (names, shapes, domains, options, "
         "supportedness). Errors are printed as file:line:col with the source line and a caret.", many=True)
    _add(sub, "ir", "print the typed IR, shapes included",
         "Print the typed IR after name resolution and shape inference: dims, params with shapes and "
         "domains, vars, the statement with the shapes of its terms, constraints normalized to g <= 0 / "
         "h == 0 with their classification, and options. Needs only a well-typed file, so it also prints "
         "problems that a later pass rejects as not supported.")
    _add(sub, "conditions", "print the derived optimality conditions and their derivatives",
         "Print the problem class, the optimality condition F(x, theta) = 0, the solver and backward "
         "method chosen (and why), and every derived function (residual, Jacobian-vector products, "
         "vjps, gradient, Hessian-vector product, bounds) in infix form with shared temporaries.")
    emit = _add(sub, "emit", "print the generated source of a backend",
                "Print the source that a backend generates for the problem (what the runtime compiles "
                "and caches).")
    emit.add_argument("--backend", choices=("torch", "triton"), default="torch",
                      help="the backend whose source to print (default: torch)")
    solve = _add(sub, "solve", "solve the problem on parameters from an .npz archive",
                 "Compile the problem, solve it on the parameters in --data, print a summary and "
                 "optionally write the solution to --out.", epilog=SOLVE_EPILOG)
    _solve_arguments(solve)
    return parser


def _add(sub, name: str, summary: str, description: str, many: bool = False, epilog: str = EPILOG):
    p = sub.add_parser(name, help=summary, description=textwrap.fill(description, 79), epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    if many:
        p.add_argument("files", nargs="+", metavar="FILE", help="the .opt file(s)")
    else:
        p.add_argument("file", metavar="FILE", help="the .opt file")
    return p


def _solve_arguments(p) -> None:
    p.add_argument("--data", metavar="PARAMS.npz", help="the parameters, one array per name "
                   "(needed unless the problem has no params)")
    p.add_argument("--out", metavar="SOLUTION.npz", help="write the solution and stats here")
    p.add_argument("--backend", choices=("torch", "triton"), default=None,
                   help="force a backend (default: torch on CPU)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="the precision of the solve (default: float64)")
    p.add_argument("--tol", type=float, default=None, help="stopping tolerance of the relative residual "
                   "(default: the file's options, else 1e-10 in float64, 1e-5 in float32)")
    p.add_argument("--max-iter", type=int, default=None, dest="max_iter",
                   help="iteration limit (default: the file's options, else 500)")
    p.add_argument("--time-limit", type=float, default=None, dest="time_limit",
                   help="seconds a solve may run (default: the file's options, else 600)")
    p.add_argument("--solver", default=None,
                   help="override the file's solver (see `optlang conditions` for the class's choices)")
    p.add_argument("--backward", default=None, help="override the file's backward method (direct, cg, ...)")


def main(argv=None) -> int:
    """Run the `optlang` command line; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else USAGE
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("optlang: error: a command is required (check, ir, conditions, emit, solve)", file=sys.stderr)
        return USAGE
    try:
        from optlang.passes.pipeline import deep_expressions

        with deep_expressions(getattr(args, "file", None) or "optlang"):
            return COMMANDS[args.command](args)
    except (OptError, CallError, UserError) as exc:
        print(exc.render() if isinstance(exc, OptError) else str(exc), file=sys.stderr)
        return USER_ERROR
    except BrokenPipeError:  # `optlang emit f.opt | head`: the reader left, which is not an error
        _silence_stdout()
        return OK


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def read_source(path: str) -> str:
    """The text of a .opt file, or UserError saying why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise UserError(path, f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(path, f"not UTF-8 text (byte {exc.start}); a .opt file is plain text") from None


def compile_stages(path: str):
    """Every compile-time pass over the file (OptError on the first problem)."""
    from optlang.passes.pipeline import run

    return run(read_source(path), path)


def cmd_check(args) -> int:
    """Check each file; report `ok` on stdout and errors on stderr; 1 if any failed."""
    status = OK
    for path in args.files:
        try:
            problem = compile_stages(path).problem
        except (OptError, UserError) as exc:
            print(exc.render() if isinstance(exc, OptError) else str(exc), file=sys.stderr)
            status = USER_ERROR
            continue
        print(f"{path}: ok (problem {problem.name}: {_count(problem.vars, 'var')}, "
              f"{_count(problem.params, 'param')})")
    return status


def _count(items, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def cmd_ir(args) -> int:
    """Print the typed IR."""
    from optlang.ir.printer import print_problem
    from optlang.passes.pipeline import check_source

    sys.stdout.write(print_problem(check_source(read_source(args.file), args.file)))
    return OK


def cmd_conditions(args) -> int:
    """Print the derived conditions, functions and choices."""
    from optlang.passes.report import print_conditions

    sys.stdout.write(print_conditions(compile_stages(args.file)))
    return OK


def cmd_emit(args) -> int:
    """Print the generated source of the chosen backend."""
    stages = compile_stages(args.file)
    sys.stdout.write(backend_printer(args.backend)(stages.plan))
    return OK


def backend_printer(backend: str):
    """The `print_plan` function of a backend, imported on demand."""
    if backend == "torch":
        from optlang.backends.torch.printer import print_plan

        return print_plan
    try:
        from optlang.backends.triton.printer import print_plan
    except ModuleNotFoundError as exc:
        if exc.name not in ("optlang.backends.triton.printer", "triton"):
            raise
        what = "Triton" if exc.name == "triton" else "the Triton backend's printer"
        raise UserError("optlang emit", f"{what} is not available in this installation "
                        f"(cannot import {exc.name}); use --backend torch") from None
    return print_plan


def cmd_solve(args) -> int:
    """Solve on the data, print a summary, write --out."""
    import torch

    from optlang.runtime.layer import compile_source

    text = read_source(args.file)
    options = {k: getattr(args, k) for k in ("tol", "max_iter", "time_limit", "solver", "backward")
               if getattr(args, k) is not None}
    try:
        layer = compile_source(text, args.file, backend=args.backend, **options)
    except CallError as exc:  # a bad option value
        raise UserError("optlang solve", str(exc)) from None
    params = load_params(args.data, layer.problem, getattr(torch, args.dtype), _device(args.backend))
    try:
        with torch.no_grad():
            sol = layer.solve(warn=False, **params)
    except CallError as exc:  # missing, extra, misshapen or out-of-domain parameters
        raise UserError(args.data or "optlang solve", str(exc)) from None
    arrays = solution_arrays(sol, layer.problem)
    print_summary(args, layer.problem, sol, arrays)
    if args.out:
        write_npz(args.out, arrays)
        print(f"wrote {args.out} ({', '.join(arrays)})")
    return OK


def _device(backend) -> str:
    """Where the parameters go: CUDA for --backend triton, else the CPU; UserError if Triton cannot run."""
    import os

    import torch

    if backend != "triton":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return "cpu"
    raise UserError("optlang solve", "--backend triton needs a CUDA device (or TRITON_INTERPRET=1 to run "
                    "Triton's interpreter on the CPU); use --backend torch")


def load_params(path, problem, dtype, device) -> dict:
    """The parameters in an .npz archive, as tensors by name (UserError if unreadable)."""
    import zipfile
    import zlib

    import numpy as np
    import torch

    if path is None:
        if problem.params:
            names = ", ".join(p.name for p in problem.params)
            raise UserError("optlang solve", f"problem '{problem.name}' needs its parameters ({names}); "
                            "pass them with --data params.npz")
        return {}
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise UserError(path, "not an .npz archive; write the parameters with "
                                "np.savez(path, NAME=array, ...), one array per parameter")
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
    except UserError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise UserError(path, f"cannot read the parameters: {why}; expected an .npz archive written by "
                        "np.savez with one array per parameter") from None
    out = {}
    for name, arr in sorted(arrays.items()):
        if not isinstance(arr, np.ndarray):  # a zip member that np.savez did not write
            raise UserError(path, f"'{name}' is not an array; write the parameters with np.savez")
        if arr.dtype.kind not in "biuf":
            raise UserError(path, f"parameter '{name}': expected real numbers, found an array of dtype {arr.dtype}")
        out[name] = torch.as_tensor(arr.astype(np.float64), dtype=dtype, device=device)
    return out


STATS = ("converged", "iterations", "residual", "status")


def solution_arrays(sol, problem) -> dict:
    """The arrays of `--out`: each var, the duals by label, then the stats (renamed on a clash)."""
    arrays = {v.name: sol[v.name].detach().cpu().numpy() for v in problem.vars}
    for label, dual in sorted(sol.duals.items()):
        arrays[label if label not in arrays else f"dual_{label}"] = dual.detach().cpu().numpy()
    clash = any(k in arrays for k in STATS)
    for key in STATS:
        arrays[f"stats_{key}" if clash else key] = getattr(sol.stats, key).detach().cpu().numpy()
    return arrays


def print_summary(args, problem, sol, arrays) -> None:
    """What was solved and how well: per-var shape, converged count, iterations, max residual."""
    stats = sol.stats
    batch = tuple(stats.converged.shape)
    count = stats.converged.numel()
    dtype = arrays[problem.vars[0].name].dtype  # as solved: a problem with no params has no --dtype input
    print(f"{args.file}: solved problem {problem.name} ({count} problem{'' if count == 1 else 's'}, "
          f"batch shape {batch}, {dtype})")
    for v in problem.vars:
        print(f"  {v.name}: shape {tuple(arrays[v.name].shape)}")
    for label, dual in sorted(sol.duals.items()):
        print(f"  dual {label}: shape {tuple(dual.shape)}")
    print(f"  converged {int(stats.converged.sum())}/{count}, iterations max {int(stats.iterations.max())}, "
          f"max residual {float(stats.residual.max()):.3g}")
    if not stats.all_converged:
        bad = [tuple(i) for i in (~stats.converged).nonzero().tolist()]
        more = " ..." if len(bad) > 20 else ""
        why = stats.failures()
        print(f"warning: problem '{problem.name}' did not converge at batch elements {bad[:20]}{more} "
              f"({why}; max relative residual {float(stats.residual.max()):.3g}); see the status array in --out",
              file=sys.stderr)


def write_npz(path: str, arrays: dict) -> None:
    """Write the arrays to exactly `path` (np.savez would append .npz to a bare name)."""
    import numpy as np

    try:
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    except OSError as exc:
        raise UserError(path, f"cannot write the solution: {exc.strerror or exc}") from None


COMMANDS = {"check": cmd_check, "ir": cmd_ir, "conditions": cmd_conditions, "emit": cmd_emit, "solve": cmd_solve}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
