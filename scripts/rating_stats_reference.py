"""Print the reference numbers tests/test_rating_stats.py checks server/rating/stats.py against.

Run in a separate virtual environment (these packages are not part of amgs or its test extra):
    python -m venv /tmp/ref && /tmp/ref/bin/pip install pingouin statsmodels scipy
    /tmp/ref/bin/python scripts/rating_stats_reference.py
Printed with pingouin 0.7.0, statsmodels 0.14, scipy 1.17.1.
"""

import numpy as np
import pandas as pd
import pingouin as pg
from scipy import stats as st
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

SF = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]

df = pd.DataFrame([(i, j, v) for i, r in enumerate(SF) for j, v in enumerate(r)], columns=["t", "r", "v"])
print(pg.intraclass_corr(df, "t", "r", "v").round(6).to_string())
print("pearsonr", st.pearsonr(WRIGHT, MINI))
print(pg.corr(WRIGHT, MINI))
for table in ([[20, 5], [10, 15]], [[75, 1, 4], [5, 4, 1], [0, 0, 10]]):
    for wt in (None, "linear", "quadratic"):
        r = cohens_kappa(np.array(table), wt=wt) if wt else cohens_kappa(np.array(table))
        print(table, wt, r.kappa, r.std_kappa, r.kappa_low, r.kappa_upp)
print("wilson 85/100", proportion_confint(85, 100, method="wilson"))
for q, a, b in ((0.975, 5, 4.785), (0.975, 4.785, 5), (0.95, 1, 1), (0.999, 3, 200)):
    print("F", q, a, b, repr(st.f.ppf(q, a, b)))
print("t .975 16", repr(st.t.ppf(0.975, 16)))
