#!/usr/bin/python3
"""The SymPy side of bench/compare/expr_compare.sh: the reference's expression front-end, timed.

For every text of a file (one a line) it does what nanoGPT-DAG does per token prefix (REFERENCE.md
§3.1-3.2): sympify(text, evaluate=False), then normalize_expression, with Sub, Div and Neg as SymPy
Function subclasses whose evalf computes in double, so that an all-Float Sub/Div/Neg collapses into a
Float exactly as at the seed (SymPy's Function constructor evaluates when every argument is a Float).
Prints one JSON object: the count and expressions/s for parse alone and for parse + normalize.

    /usr/bin/python3 bench/compare/expr_sympy.py TEXTS_FILE [--repeat R]
"""

import argparse
import json
import sys
import time

import sympy
from sympy import Add, Float, Function, Integer, Mul, Pow


class _Collapsing(Function):
    """A Sub/Div/Neg node: left unevaluated unless every argument is a Float (then SymPy calls evalf)."""

    @classmethod
    def eval(cls, *args):
        return None  # never simplify symbolically

    def _eval_evalf(self, prec):
        return Float(self._double([float(a) for a in self.args]), 15)


class Sub(_Collapsing):
    """a0 - a1 - ... (at least 2 args)."""

    @staticmethod
    def _double(v):
        r = v[0]
        for x in v[1:]:
            r -= x
        return r


class Div(_Collapsing):
    """a0 / a1 / ... (at least 2 args)."""

    @staticmethod
    def _double(v):
        r = v[0]
        for x in v[1:]:
            r /= x
        return r


class Neg(_Collapsing):
    """-x."""

    @staticmethod
    def _double(v):
        return -v[0]


def _is_minus_one(e):
    # Only the Integer -1 counts (SymPy >= 1.13 has Float(-1.0) != Integer(-1); checked by type here so
    # that older SymPy versions behave the same).
    return isinstance(e, Integer) and e == -1


def _is_negation(e):
    return isinstance(e, Mul) and len(e.args) == 2 and _is_minus_one(e.args[0])


def normalize_expression(e):
    """REFERENCE.md §3.2, top-down and recursive."""
    if isinstance(e, Mul):
        if _is_negation(e):
            return Neg(normalize_expression(e.args[1]))
        num, den = [], []
        for f in e.args:
            if isinstance(f, Pow) and f.exp == -1:
                den.append(normalize_expression(f.base))
            else:
                num.append(normalize_expression(f))
        if den:
            if len(num) == 1:
                head = num[0]
            elif not num:
                head = Integer(1)
            else:
                head = Mul(*num, evaluate=False)
            return Div(head, *den)
        return Mul(*num, evaluate=False)
    if isinstance(e, Add):
        terms, pos, neg = [], [], []
        for a in e.args:
            t = normalize_expression(a)
            terms.append(t)
            if isinstance(t, Neg):
                neg.append(t.args[0])
            elif _is_negation(a):
                neg.append(normalize_expression(a.args[1]))
            else:
                pos.append(t)
        if neg:
            if len(pos) == 1:
                head = pos[0]
            elif not pos:
                head = Integer(0)
            else:
                head = Add(*pos, evaluate=False)
            return Sub(head, *neg)
        return Add(*terms, evaluate=False)
    if isinstance(e, Pow):
        if e.exp == -1:
            return Div(Integer(1), normalize_expression(e.base))
        return Pow(normalize_expression(e.base), normalize_expression(e.exp))  # evaluated, as the seed
    return e  # literals (and anything else) unchanged


def rate(texts, work, repeat):
    """Best expressions/s over `repeat` passes of `work` over all texts."""
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for s in texts:
            work(s)
        took = time.perf_counter() - start
        best = max(best, len(texts) / took)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("texts", help="file of expression texts, one a line")
    ap.add_argument("--repeat", type=int, default=1, help="passes over the texts; the best is reported")
    args = ap.parse_args()
    with open(args.texts) as f:
        texts = [line.strip() for line in f if line.strip()]

    def parse(s):
        return sympy.sympify(s, evaluate=False)

    def parse_normalize(s):
        return normalize_expression(sympy.sympify(s, evaluate=False))

    # Sanity: the custom nodes collapse as at the seed, and Integer operands keep them.
    assert normalize_expression(parse("8.0/2.0")) == Float(4.0)
    assert isinstance(normalize_expression(parse("3.34 - 5")), Sub)
    for s in ("1.0 + 2.0", "3.0 - 4.0*5.0", "6.0/(7.0 - 8.0)"):  # warm-up: imports, first-use caches
        parse_normalize(s)

    result = {
        "count": len(texts),
        "sympy_version": sympy.__version__,
        "python_version": sys.version.split()[0],
        "parse_per_s": rate(texts, parse, args.repeat),
        "parse_normalize_per_s": rate(texts, parse_normalize, args.repeat),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
