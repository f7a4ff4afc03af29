"""Writes the reference values that store/effects_test.cc checks FactorialAnova against.

Run by hand, not by the build: it needs statsmodels, pandas and scipy
(python3 -m venv /tmp/fx && /tmp/fx/bin/pip install statsmodels pandas), and
rewrites the effects_*.json files beside it:

    /tmp/fx/bin/python store/testdata/make_effects_fixtures.py

The sums of squares, F and p come from statsmodels' anova_lm (Type II) of an
ordinary least-squares fit with every factor categorical; each level's effect
is its mean minus the grand mean, with the 95% half-width
t(0.975, df_error) * sqrt(MSE * (1/n_level - 1/N)) from scipy's t quantile.
Each two-factor interaction's cell effects start from pandas' groupby cell
means of the two factors' table: the effect of cell (i, j) is the sum of
C * M over the table M of cell means with weights
C = outer(e_i - 1/a, e_j - 1/b), and its 95% half-width is
t(0.975, df_error) * sqrt(MSE * sum(C**2 / counts)), MSE being statsmodels'
residual mean square.
"""
import itertools
import json
import os

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm

HERE = os.path.dirname(os.path.abspath(__file__))


def grid(levels, replicates, effects, noise, seed):
    """Every combination of levels, `replicates` times, with additive effects and noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for combo in itertools.product(*levels.values()):
        for _ in range(replicates):
            y = 1.5 + sum(effects[f].get(v, 0.0) for f, v in zip(levels, combo))
            # A small interaction so that interaction rows are not all noise.
            first = list(levels.values())[0].index(combo[0])
            last = list(levels.values())[-1].index(combo[-1])
            y += 0.015 * first * last
            y += rng.normal(0.0, noise)
            rows.append(dict(zip(levels, combo), y=float(y)))
    return rows


def cell_effects(df, f, g, levels, mse, t):
    """Every cell's interaction effect of factors f and g, from the cell means."""
    cells = df.groupby([f, g]).y.agg(["mean", "count"])
    rows = [level for level in levels[f] if level in set(df[f])]
    columns = [level for level in levels[g] if level in set(df[g])]
    means = np.array([[cells.loc[(i, j), "mean"] for j in columns] for i in rows])
    counts = np.array([[cells.loc[(i, j), "count"] for j in columns] for i in rows], dtype=float)
    a, b = means.shape
    out = []
    for i in range(a):
        for j in range(b):
            weights = np.outer(np.eye(a)[i] - 1.0 / a, np.eye(b)[j] - 1.0 / b)
            ci95 = t * float(np.sqrt(mse * (weights ** 2 / counts).sum()))
            if (counts == counts[0, 0]).all():  # the balanced formula agrees
                balanced = t * np.sqrt(mse * (a - 1) * (b - 1) / (a * b * counts[0, 0]))
                assert np.isclose(ci95, balanced, rtol=1e-12), (ci95, balanced)
            out.append({
                "levels": [rows[i], columns[j]],
                "n": int(counts[i, j]),
                "mean": float(means[i, j]),
                "effect": float((weights * means).sum()),
                "ci95": ci95,
            })
    return out


def reference(name, levels, rows, order, note):
    df = pd.DataFrame(rows)
    factors = list(levels)
    terms = []
    for k in range(1, order + 1):
        for combo in itertools.combinations(factors, k):
            terms.append(":".join(f"C({f})" for f in combo))
    fit = smf.ols("y ~ " + " + ".join(terms), data=df).fit()
    table = anova_lm(fit, typ=2)
    ss_total = float(((df.y - df.y.mean()) ** 2).sum())
    expected_terms = []
    for term, row in table.iterrows():
        if term == "Residual":
            continue
        expected_terms.append({
            "name": term.replace("C(", "").replace(")", ""),
            "df": int(round(row["df"])),
            "sum_sq": float(row["sum_sq"]),
            "f": float(row["F"]),
            "p": float(row["PR(>F)"]),
            "eta_squared": float(row["sum_sq"]) / ss_total,
        })
    df_error = int(round(table.loc["Residual", "df"]))
    mse = float(table.loc["Residual", "sum_sq"]) / df_error
    t = float(stats.t.ppf(0.975, df_error))
    n_total = len(df)
    grand = float(df.y.mean())
    effects = {}
    for f in factors:
        effects[f] = {}
        for level in levels[f]:
            ys = df.y[df[f] == level]
            if len(ys) == 0:
                continue
            effects[f][level] = {
                "n": int(len(ys)),
                "mean": float(ys.mean()),
                "effect": float(ys.mean()) - grand,
                "ci95": t * float(np.sqrt(mse * (1.0 / len(ys) - 1.0 / n_total))),
            }
    interactions = {}
    if order >= 2:
        for f, g in itertools.combinations(factors, 2):
            interactions[f"{f}:{g}"] = cell_effects(df, f, g, levels, mse, t)
    fixture = {
        "note": note,
        "factors": factors,
        "levels": [levels[f] for f in factors],
        "observations": [{"levels": [r[f] for f in factors], "y": r["y"]} for r in rows],
        "order": order,
        "expected": {
            "grand_mean": grand,
            "ss_total": ss_total,
            "df_error": df_error,
            "ss_error": float(table.loc["Residual", "sum_sq"]),
            "terms": expected_terms,
            "effects": effects,
            "interactions": interactions,
        },
    }
    with open(os.path.join(HERE, f"effects_{name}.json"), "w") as out:
        json.dump(fixture, out, indent=1)
        out.write("\n")


def main():
    two_way = {"cell": ["lstm", "gru", "mgu"], "layer_norm": ["true", "false"]}
    two_way_effects = {"cell": {"gru": -0.1, "mgu": 0.1}, "layer_norm": {"true": -0.08}}
    rows = grid(two_way, 3, two_way_effects, 0.02, 1)
    reference("two_way_replicated", two_way, rows, 2,
              "balanced 3x2 grid, 3 seeds per cell; error: the replicates")

    three_way = {"cell": ["lstm", "gru", "mgu"], "layer_norm": ["true", "false"],
                 "init": ["xavier", "variance_scaling", "orthogonal"]}
    three_way_effects = {"cell": {"gru": -0.1, "mgu": 0.1}, "layer_norm": {"true": -0.08},
                         "init": {"orthogonal": 0.02, "variance_scaling": 0.05}}
    rows = grid(three_way, 1, three_way_effects, 0.02, 2)
    reference("three_way_one_seed", three_way, rows, 2,
              "balanced 3x2x3 grid, one seed; error: the three-way interaction")

    rows = grid(two_way, 3, two_way_effects, 0.02, 3)
    for drop in (17, 9, 4):  # jobs that failed: cells of 3, 2 and 1 replicates remain
        del rows[drop]
    reference("two_way_unbalanced", two_way, rows, 2,
              "3x2 grid with 3 seeds, 3 jobs missing; Type II sums of squares")

    rows = grid(three_way, 1, three_way_effects, 0.02, 4)
    del rows[5]
    reference("three_way_one_missing", three_way, rows, 2,
              "3x2x3 grid, one seed, one job missing; Type II sums of squares")


if __name__ == "__main__":
    main()
