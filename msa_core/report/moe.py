"""Section 3: language-specific experts in ``moe-lm`` (the paper's Mixtral experiment, scaled down)."""

from __future__ import annotations

from typing import Any

from ..analysis import specialist_table
from ..runs import RunSpec
from .markdown import md_table, run_tag
from .runs import Budget, FindingsRuns

__all__ = ["moe_findings", "moe_markdown"]


def moe_findings(runs: FindingsRuns, budget: Budget) -> dict[str, Any]:
    """Exact Shapley values of the 8 experts per language (the built-in's default game), specialists and
    the effect of lesioning each language's top-2 specialists."""
    if budget.moe_permutations is None:
        spec = RunSpec("moe-lm", method="exact")
    else:  # quick budgets: the exact game costs 256 forward passes of the LM
        spec = RunSpec("moe-lm", n_permutations=budget.moe_permutations, seed=budget.seed)
    record = runs.run("moe", f"moe-lm {spec.method}", spec)
    names = list(record.result.metadata.get("output_labels") or [])
    game = runs.game(record)
    table = specialist_table(record.result, game, k=2, output_labels=names, scale="relative")
    return {"record": record, "result": record.result, "table": table, "languages": names, "n_words": game.n_inputs}


def moe_markdown(moe: dict[str, Any], figure: str) -> list[str]:
    """The Markdown of section 3 (lines)."""
    exact = moe["record"].spec.method == "exact"
    how = ("exact Shapley values (all 256 coalitions)" if exact
           else f"{moe['record'].spec.n_permutations} sampled permutations (quick budget)")
    return _moe_lines(moe, figure, how)


def _moe_lines(moe: dict[str, Any], figure: str, how: str) -> list[str]:
    mt = moe["table"]
    best = mt["selectivity"].idxmax()
    weak = mt["selectivity"].mean() < 0.5 * mt["target_drop"].mean()
    return [
        "## 3. Language-specific experts in moe-lm (the paper's Mixtral experiment, scaled down)",
        "",
        f"Run {run_tag(moe['record'])}. Game (the built-in's default): mean log-likelihood per token (nats) of "
        f"{moe['n_words']} held-out words, per language (a 5-vector); players: the 4 experts of each of the 2 MoE "
        f"blocks (8 in all), lesioned by skipping (router logit set to -inf); {how}. Specificity of an expert for a language: its Shapley value for that language minus its mean "
        "value for the others, each divided by the language's total `v(N) - v(empty)`. Then the top-2 specialists "
        "of each language are lesioned together:",
        "",
        md_table(mt),
        "",
        f"Most selective: lesioning {mt.loc[best, 'specialists']} drops {best} from {mt.loc[best, 'intact']:.3f} to "
        f"{mt.loc[best, 'lesioned']:.3f} nats/token ({mt.loc[best, 'target_drop']:.3f}) while the other languages drop "
        f"by {mt.loc[best, 'other_drop']:.3f} on average. {int((mt['selectivity'] > 0).sum())} of {len(mt)} languages "
        "lose more than the others when their own specialists are lesioned"
        + (
            f". The margins are small, though: mean selectivity {mt['selectivity'].mean():.3f} against a mean drop of "
            f"{mt['target_drop'].mean():.3f} on the lesioned language, so specialisation in this 8-expert model is weak "
            "next to the paper's Mixtral German experts (1.0 -> 0.27)."
            if weak else ": the experts are language-specific, as the paper found for Mixtral (German 1.0 -> 0.27)."
        ),
        "",
        f"![MoE experts]({figure})",
        "",
    ]
