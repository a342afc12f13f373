"""``python -m training NAME [NAME ...]``: train built-in models into ``assets/`` (see ``--help``)."""

from __future__ import annotations

import argparse
import time

from msa_core.zoo import assets_dir

from . import common


def _trainers() -> dict:
    # Imported lazily so that e.g. the Fashion-MNIST models train without scikit-learn installed.
    def digits(name):
        from .digits import train_dcgan, train_mlp

        return (train_dcgan if name == "dcgan-digits" else train_mlp)(name)

    def moe(name):
        from .moe import train_moe_lm

        return train_moe_lm(name)

    def fashion(name):
        from .fashion import train_builtin, train_sweep

        return train_sweep() if name == "sweep" else train_builtin(name)

    return {
        "mlp-digits": digits, "mlp-digits-l1": digits, "mlp-digits-l2": digits, "dcgan-digits": digits,
        "moe-lm": moe, "mlp-fashion": fashion, "mlp-fashion-l1": fashion, "mlp-fashion-l2": fashion,
        "sweep": fashion,
    }


def main(argv: list[str] | None = None) -> None:
    """Train the named models; ``all`` = every built-in (MLPs first), ``sweep`` = the Fashion-MNIST width sweep."""
    trainers = _trainers()
    parser = argparse.ArgumentParser(prog="python -m training", description="Train the built-in models into assets/.")
    parser.add_argument("names", nargs="+", choices=[*trainers, "all"])
    parser.add_argument("--threads", type=int, default=2,
                        help="torch CPU threads (default 2; use 1 if other jobs share the CPU: "
                             "oversubscribed OpenMP threads make small convs ~10x slower)")
    args = parser.parse_args(argv)
    common.N_THREADS = args.threads
    names = [n for n in trainers if n != "sweep"] if "all" in args.names else list(dict.fromkeys(args.names))
    assets_dir().mkdir(parents=True, exist_ok=True)
    for name in names:
        t0 = time.time()
        trainers[name](name)
        print(f"[{name}] done in {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
