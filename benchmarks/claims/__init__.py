"""The report kinds (benchmarks/evidence.py): one module per kind, each holding its registration class, the paper's
claims it checks against the collected runs, its BENCHMARKS.md section and its README sentences; core.py holds the
statistics they share. report.KINDS lists the kinds in the order of the paper.

Baseline and TrAct runs of one seed share the initial weights and the data order, so every comparison here is
*paired*: per seed, the difference of the two final test top-1 accuracies; then their mean, its standard error
(sample std / √n) and a two-sided 95 % t interval with n − 1 degrees of freedom.

A claim's verdict comes from its intervals alone:
  *reproduced*      every part's interval lies entirely on the claimed side of 0,
  *not reproduced*  some part's interval lies entirely on the other side,
  *inconclusive*    otherwise; a part with fewer than 2 seeds has no interval and is always inconclusive.
A "part" is one comparison a claim makes (one budget of "TrAct better at every budget", one λ of a sweep).

The quotes are the registrations' (from ../shared/PAPER-NUMBERS.md, figure or table named). Everything else is
computed from the JSON under benchmarks/results/experiments/, read by collected.Collected (or any object with the
same methods, claims.core.Source).
"""
