"""pymoo's NSGA-II on the problem `donna bench search` writes, for a side-by-side comparison.

Usage: python benches/search_pymoo.py PROBLEM.json OUT.json

The problem is DONNA-shaped: `blocks` blocks of `options` choices each; predicted accuracy is
`base - sum_b w[b] * nsr[b][o_b]` (a linear predictor on per-block NSR) and latency is
`overhead + sum_b lat[b][o_b]` (a per-block latency table). Both objectives are evaluated
vectorised with numpy (pymoo's fastest path), with integer variables (rounded SBX and
polynomial mutation, duplicates eliminated), the set-up pymoo documents for discrete problems.
Every evaluated point is returned so that donna computes both hypervolumes the same way.
"""
import json
import sys
import time

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.optimize import minimize


def main():
    spec = json.load(open(sys.argv[1]))
    nsr = np.array(spec["nsr"])  # blocks x options
    lat = np.array(spec["lat"])
    w = np.array(spec["weights"])
    blocks, options = nsr.shape
    seen = []

    class Donna(Problem):
        def __init__(self):
            super().__init__(n_var=blocks, n_obj=2, xl=0, xu=options - 1, vtype=int)

        def _evaluate(self, x, out, *args, **kwargs):
            idx = x.astype(int)
            rows = np.arange(blocks)
            acc = spec["base"] - (nsr[rows, idx] * w).sum(axis=1)
            latency = spec["overhead"] + lat[rows, idx].sum(axis=1)
            f = np.column_stack([-acc, latency])
            seen.append(f)
            out["F"] = f

    algorithm = NSGA2(
        pop_size=spec["population"],
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=3.0, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=3.0, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    start = time.perf_counter()
    minimize(Donna(), algorithm, ("n_gen", spec["generations"] + 1), seed=spec["seed"], verbose=False)
    seconds = time.perf_counter() - start
    points = np.concatenate(seen).tolist()
    json.dump({"seconds": seconds, "points": points}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
