"""The words of report.md: what was run, what the numbers say, and what they depend on.

Every sentence that states a result is built from the summary's numbers, so the
report cannot claim a gain the runs did not show; the assumptions behind the
trainer-loop baselines are listed where their rows are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from knapsack_trainer.sim import metrics

ASSUMPTIONS: dict[str, str] = {
    "dapo": (
        "DAPO (verl's DAPO recipe, `filter_groups`): one generation batch per step (the step's "
        "prompts x 8 rollouts), all-agree groups dropped, kept groups pooled until a batch is "
        "full, then one GRPO step on exactly a batch (extras dropped, as the recipe truncates). "
        "Assumed: after 10 generation batches a partial batch is learnt from; the last step "
        "learns from what is pending. The effective ratio counts every rollout generated, "
        "dropped groups included. In this model a step moves the shared skills by the "
        "batch's mean signal, so pooling mixed groups into fewer, fuller steps moves them "
        "about as far as spreading the same groups over more steps; at equal rollouts DAPO "
        "then loses the groups it drops and learns from groups up to a few steps old. What "
        "DAPO buys a real trainer (steadier batch statistics, no all-zero-advantage tokens "
        "in the loss normaliser) is not modelled."
    ),
    "mopps": (
        "MoPPS (arXiv 2507.04632): Beta(1, 1) prior per prompt; each step 4 x batch candidates "
        "are drawn, a success rate is sampled from each posterior (Thompson sampling) and the "
        "batch closest to 0.5 are trained on with 8 rollouts each; a trained prompt's posterior "
        "becomes lam a + (1 - lam) a0 + k, lam b + (1 - lam) b0 + n - k. Assumed (not in the "
        "text we could read): lam = 0.5, candidate ratio 4."
    ),
    "coba": (
        "CoBA-RL (arXiv 2602.03048, authors' BetaAllocator): n_low 2, n_up 128, Beta shape sum "
        "11 (their run script), tau in [3, 12], 80% of the budget above n_low by heap greedy on "
        "(1 - exp(-N p(1-p)/tau)) BetaPdf(p; a(f), b(f)), the rest to p < 0.05 prompts "
        "weighted by 1 - p. Per-prompt rate: the last visit's (window 1); capability f: one "
        "minus the previous step's mean per-prompt rate. Computed in the trainer loop (the "
        "service keeps no run-level capability) with the engine's `coba_allocate`."
    ),
}


def uniform_baseline(found: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any] | None:
    """The uniform run to compare `entry` with: same budget and returns if run, else default.

    Uniform's groups are all `rollouts_per_prompt` (8) rollouts, where every returns
    option gives the same signal, so its default run is also its run under the others
    (a test checks that the dynamics are identical).
    """
    same = [
        e for e in found.values() if e["strategy"] == "uniform" and e["budget"] == entry["budget"]
    ]
    exact = [e for e in same if e["returns"] == entry["returns"]]
    return (exact or same or [None])[0]


def _fmt(value: float) -> str:
    return f"{value:+.3f}"


#: Strategies whose groups exceed 8 rollouts, compared under each returns option.
LARGE_GROUP_STRATEGIES = ("knapsack", "knapsack-bayes", "coba")


def returns_section(summary: dict[str, Any]) -> list[str]:
    """What each large-group strategy gains over uniform under each returns option, plainly."""
    found = summary["strategies"]
    rows = []
    for entry in found.values():
        if entry["strategy"] not in LARGE_GROUP_STRATEGIES:
            continue
        uniform = uniform_baseline(found, entry)
        if uniform is None:
            continue
        gains = np.subtract(
            entry["final_mean_success_by_seed"], uniform["final_mean_success_by_seed"]
        )
        held = np.subtract(
            entry["final_heldout_success_by_seed"], uniform["final_heldout_success_by_seed"]
        )
        rows.append((entry["strategy"], entry["returns"], gains, held, entry, uniform))
    if not rows:
        return []
    lines = [
        "## What the success gain depends on",
        "",
        "The simulator must assume how far a group of n rollouts moves its prompt "
        "(`returns`): linear (n * std, the exact gradient of the logistic model), sqrt "
        "(sqrt(8 n) * std) or capped (min(n, 16) * std). All three agree for groups of 8, "
        "so uniform (all groups of 8) is the same run under each; only large groups differ.",
        "",
        "| strategy | returns | minus uniform, final success (per seed) | held-out | "
        "eff. ratio / uniform's | max group |",
        "|---|---|---|---|---|---|",
    ]
    rows.sort(key=lambda row: (LARGE_GROUP_STRATEGIES.index(row[0]), row[1] != "linear"))
    for name, returns, gains, held, entry, uniform in rows:
        per_seed = ", ".join(_fmt(g) for g in gains)
        lines.append(
            f"| {name} | {returns} | {_fmt(float(gains.mean()))} ({per_seed}) | "
            f"{_fmt(float(held.mean()))} | {entry['mean_effective_ratio']:.3f} / "
            f"{uniform['mean_effective_ratio']:.3f} | {entry['max_group']} |"
        )
    lines.append("")
    for name in LARGE_GROUP_STRATEGIES:
        gain = {r: float(g.mean()) for n, r, g, *_ in rows if n == name}
        if "linear" not in gain or len(gain) < 2:
            continue
        worst = min((r for r in gain if r != "linear"), key=gain.__getitem__)
        lines.append(
            f"- {name}: {_fmt(gain['linear'])} over uniform with linear returns, "
            f"{_fmt(gain[worst])} with {worst} returns."
        )
    lines += [
        "",
        "In plain words: the effective-gradient ratio is a property of the allocation and "
        "holds under every returns option; the success it buys is not. How much a strategy "
        "that gives some prompts many rollouts gains depends on how far an LLM's update on "
        "one prompt grows with that prompt's rollouts, which this simulator assumes and "
        "cannot measure.",
    ]
    linear = {n: e for n, r, _, _, e, _ in rows if r == "linear"}
    if len(linear) > 1:
        largest = max(linear, key=lambda n: linear[n]["max_group"])
        gains = {(n, r): float(g.mean()) for n, r, g, *_ in rows}
        best_linear = max((n for n, r in gains if r == "linear"), key=lambda n: gains[n, "linear"])
        worst = min(gains, key=gains.__getitem__)
        if best_linear == largest and worst[0] == largest and worst[1] != "linear":
            lines.append(
                f"Here {largest}, whose groups are largest ({linear[largest]['max_group']}), "
                f"gains most under linear returns and least under {worst[1]} returns."
            )
    lines.append("")
    return lines


def bayes_section(summary: dict[str, Any]) -> list[str]:
    """knapsack-bayes against its goal (issue 11 section 3), from the numbers."""
    found = summary["strategies"]
    if "knapsack" not in found or "knapsack-bayes" not in found:
        return []
    ks, kb = found["knapsack"], found["knapsack-bayes"]
    final_ok = kb["final_mean_success"] >= ks["final_mean_success"] - 0.01
    epoch_ok = kb["first_epoch_effective_ratio"] > ks["first_epoch_effective_ratio"]
    lines = [
        "## knapsack-bayes against its goal",
        "",
        f"Goal: final success at least knapsack's within 0.01 (knapsack-bayes "
        f"{kb['final_mean_success']:.3f}, knapsack {ks['final_mean_success']:.3f}: "
        f"{'reached' if final_ok else 'not reached'}) and a higher effective-gradient ratio "
        f"in the first epoch ({kb['first_epoch_effective_ratio']:.3f} against "
        f"{ks['first_epoch_effective_ratio']:.3f}: {'reached' if epoch_ok else 'not reached'}).",
        "",
    ]
    if not epoch_ok:
        lines += [
            "Why the first epoch cannot differ here: every prompt is visited once per epoch, "
            "so during the first epoch every prompt of every batch is unseen, and the pooled "
            "prior is one and the same distribution for all of them. With nothing that tells "
            "two unseen prompts apart, the expected value is the same for each and the best "
            "allocation is the even spread, which is what knapsack gives unseen prompts too. "
            "Beating it would need evidence shared between prompts (a prior per topic), "
            "which the service does not keep.",
            "",
        ]
    return lines


def transitions_table(entry: dict[str, Any]) -> list[str]:
    """Fig. 7 as a Markdown table: share of each starting band that ends in each band."""
    matrix = np.asarray(entry["band_transitions"], dtype=np.float64)
    labels = metrics.DIFFICULTY_LABELS
    lines = [
        "| start \\ end | " + " | ".join(labels) + " | prompts |",
        "|" + "---|" * (len(labels) + 2),
    ]
    for i, label in enumerate(labels):
        total = matrix[i].sum()
        if total == 0:
            continue
        shares = " | ".join(f"{v / total:.2f}" for v in matrix[i])
        lines.append(f"| {label} | {shares} | {int(total)} |")
    return lines


def spend_section(summary: dict[str, Any]) -> list[str]:
    """Rollouts spent per run by each strategy: the equal-spend claim, checked."""
    lines = ["## Rollouts spent", ""]
    seeds = len(summary.get("config", {}).get("seeds", [])) or 1
    for name, entry in summary["strategies"].items():
        totals = sorted(set(entry["rollouts_spent_by_seed"]))
        note = "" if entry["spends_budget"] else " (may spend less than its budget)"
        lines.append(f"- {name}: {', '.join(str(t) for t in totals)} per run{note}")
    lines += [
        "",
        f"Each run spends the budget every step (the runner raises otherwise), {seeds} "
        "seed(s); uniform-2x is the twice-the-budget reference of Fig. 9.",
        "",
    ]
    return lines


def report_lines(
    summary: dict[str, Any],
    figures: dict[str, str],
    labels: Mapping[str, Any],
    table: str,
    comparisons: dict[str, float],
) -> list[str]:
    """The lines of report.md."""
    setup = summary.get("config", {})
    specs = {}
    for label in labels.values():
        specs.setdefault(label.spec.name, label.spec)
    lines = [
        f"# knapsack-rl demo: simulated GRPO under {len(specs)} budget strategies",
        "",
        "A seeded model of GRPO learning dynamics (logistic success per prompt, updates "
        "only from groups with both successes and failures) runs every strategy on the same "
        "prompts, batches and seeds. Service strategies ask the knapsack-rl service for every "
        "step's allocation and report the outcomes back, exactly as a trainer would; DAPO, "
        "MoPPS and CoBA act in the trainer loop. Numbers are means over seeds; sd is the "
        "standard deviation across seeds.",
        "",
        f"Setup: {setup.get('prompts')} training prompts and {setup.get('heldout')} held-out "
        f"prompts (same topics, never trained on), batch {setup.get('batch_size')}, "
        f"{setup.get('steps')} steps, seeds {setup.get('seeds')}, base budget "
        f"{setup.get('base_budget')} rollouts per step, returns {setup.get('returns')} "
        f"(reruns under {', '.join(setup.get('diminishing', [])) or 'none'}), "
        f"service: {setup.get('service')}.",
        "",
        "| strategy | what it does |",
        "|---|---|",
        *(f"| {s.name} | {s.description} |" for s in specs.values()),
        "",
        "## Results",
        "",
        table,
        "",
        "- spent/step: rollouts actually spent per step, dropped DAPO groups included.",
        "- eff. ratio: share of rollouts in groups with both successes and failures "
        "(the only ones GRPO learns from), over all steps; eff. 1st epoch: over the first "
        "epoch, before any prompt has been seen twice.",
        "- final success: mean true success over the training prompts after the last step; "
        "held-out: the same over prompts never trained on (what carries over: general and "
        "topic skill, not the memorised per-prompt part).",
        f"- mastered: share of prompts with p > {metrics.MASTERED_ABOVE}; never solved: "
        f"share with p < {metrics.NEVER_SOLVED_BELOW}; max group: largest group of any step.",
        "",
    ]
    for key, value in comparisons.items():
        shown = f"{value:.3f}x" if "_vs_" in key else f"{value:+.3f}"
        lines.append(f"- {key.replace('_', ' ')}: {shown}")
    lines.append("")
    lines += returns_section(summary)
    lines += bayes_section(summary)
    lines += spend_section(summary)
    present = [k for k in ASSUMPTIONS if k in specs]
    if present:
        lines += ["## Trainer-loop baselines: what was assumed", ""]
        lines += [f"- {kind}: {ASSUMPTIONS[kind]}" for kind in present]
        lines.append("")
    lines += [
        "## Difficulty transitions, first to last step (cf. paper Fig. 7)",
        "",
    ]
    for name in ("uniform", "knapsack"):
        if name in summary["strategies"]:
            lines += [f"{name}:", "", *transitions_table(summary["strategies"][name]), ""]
    for title, filename in figures.items():
        lines += [f"## {title}", "", f"![{title}]({filename})", ""]
    return lines
