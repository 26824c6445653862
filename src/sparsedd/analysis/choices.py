"""The analysis settings a user chooses (``--min-rise``, ``--lambda-rule``) and their defaults.

Plain values in a module that imports nothing, so that the command line reads them at start-up
without importing numpy and pandas, which ``verdict`` and ``lambdas`` (where they are used) need.
"""

#: Minimum fall and rise (fractions) that count as SDD, and below which a valley is no SDD.
DEFAULT_MIN_RISE = 0.025
#: The rules that choose λ among curves (``lambdas``), the default first.
LAMBDA_RULES = ("avoid-sdd", "best-val", "at-sparsity")
DEFAULT_LAMBDA_RULE = LAMBDA_RULES[0]
