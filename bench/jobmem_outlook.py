"""How long the Run page's memory line takes at paper scale: ``memory_outlook`` per method (no game calls).

Run: ``PYTHONPATH=. python bench/jobmem_outlook.py``. Prints milliseconds per call and the line itself.
"""

from __future__ import annotations

import time

from msa_core.runs import RunSpec
from msa_core.runs.cost import memory_outlook

CASES = [("permutation", 2000), ("owen", 2000), ("exact", 20), ("kernel", 2000), ("leverage", 2000), ("kadd", 200),
         ("auto", 2000), ("topk", 2000)]  # (method, players); 10^7 evaluations, 10^5 outputs, a 4 GB bound

if __name__ == "__main__":
    for method, n in CASES:
        began = time.perf_counter()
        outlook = memory_outlook(RunSpec("x", method=method, budget=10**7), n, 10**5, "4GB")
        print(f"{method:12s} n={n:5d} {1e3 * (time.perf_counter() - began):7.1f} ms  {outlook['text'][:100]}")
