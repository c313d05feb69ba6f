"""Strong-Wolfe line search of Moré and Thuente (MINPACK-2 ``dcsrch``/``dcstep``).

Finds a step ``a > 0`` along a descent direction with

    phi(a) <= phi(0) + c1 * a * phi'(0)          (sufficient decrease)
    |phi'(a)| <= c2 * |phi'(0)|                  (strong curvature condition)

by safeguarded cubic/quadratic interpolation inside an interval that is first widened by
extrapolation and then shrunk around a minimizer. Reference: J. J. Moré and D. J. Thuente,
"Line search algorithms with guaranteed sufficient decrease", ACM TOMS 20(3), 1994, 286-307.
This is the search scipy's BFGS uses first (``scipy.optimize.line_search_wolfe1``); with the
same constants both take the same steps, which the tests check.

Only scalars live here: the caller supplies ``evaluate(a) -> (phi(a), phi'(a))`` and does the
tensor work. The search always returns the point it evaluated last, so a caller that keeps the
gradient of its last evaluation holds the gradient at the accepted step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Tuple


@dataclass
class LineSearchResult:
    """Outcome of one search.

    Attributes:
        ok: the strong Wolfe conditions hold at ``step``.
        step: the accepted step; on failure, the last step evaluated (0 when none was),
            which the caller may use or discard.
        value, slope: phi and phi' at ``step``.
        evaluations: calls of ``evaluate``.
        message: why the search stopped.
    """

    ok: bool
    step: float
    value: float
    slope: float
    evaluations: int
    message: str


def _cubic_min(a: float, fa: float, da: float, b: float, fb: float, db: float,
               clip_radicand: bool = False) -> Tuple[float, float]:
    """Minimizer of the cubic through (a, fa, da), (b, fb, db), written as a + r (b - a);
    returns (step, gamma). Scaled by s to avoid overflow, as in Moré-Thuente."""
    theta = 3.0 * (fa - fb) / (b - a) + da + db
    s = max(abs(theta), abs(da), abs(db))
    radicand = (theta / s) ** 2 - (da / s) * (db / s)
    if clip_radicand:
        radicand = max(0.0, radicand)
    gamma = s * math.sqrt(radicand)
    if b < a:
        gamma = -gamma
    p = (gamma - da) + theta
    q = ((gamma - da) + gamma) + db
    return a + (p / q) * (b - a), gamma


def _safeguarded_step(stx, fx, dx, sty, fy, dy, stp, fp, dp, bracketed, stmin, stmax):
    """One update of the interval of uncertainty [stx, sty] and the next trial step.

    stx holds the best step so far (least value), sty the other end, stp the trial just
    evaluated; fx, dx, ... are values and slopes. Returns the new (stx, fx, dx, sty, fy, dy,
    stp, bracketed). The four cases are those of Moré-Thuente, section 4.
    """
    opposite = (dp > 0) != (dx > 0) and dp != 0 and dx != 0
    if fp > fx:
        # Case 1: higher value, a minimizer is bracketed. Cubic step unless it is far from stx.
        stpc, _ = _cubic_min(stx, fx, dx, stp, fp, dp)
        stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
        stpf = stpc if abs(stpc - stx) <= abs(stpq - stx) else stpc + (stpq - stpc) / 2.0
        bracketed = True
    elif opposite:
        # Case 2: lower value, slopes of opposite sign: bracketed. Take the farther of the
        # cubic and secant steps from stp.
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * math.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
        if stp > stx:
            gamma = -gamma
        r = ((gamma - dp) + theta) / (((gamma - dp) + gamma) + dx)
        stpc = stp + r * (stx - stp)
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
        bracketed = True
    elif abs(dp) < abs(dx):
        # Case 3: lower value, same-sign slope decreasing in magnitude. The cubic may have no
        # minimizer in the direction of the step: then go to the bound.
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * math.sqrt(max(0.0, (theta / s) ** 2 - (dx / s) * (dp / s)))
        if stp > stx:
            gamma = -gamma
        r = ((gamma - dp) + theta) / ((gamma + (dx - dp)) + gamma)
        if r < 0 and gamma != 0:
            stpc = stp + r * (stx - stp)
        elif stp > stx:
            stpc = stmax
        else:
            stpc = stmin
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        if bracketed:
            stpf = stpc if abs(stpc - stp) < abs(stpq - stp) else stpq
            limit = stp + 0.66 * (sty - stp)
            stpf = min(limit, stpf) if stp > stx else max(limit, stpf)
        else:
            stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
            stpf = min(max(stpf, stmin), stmax)
    else:
        # Case 4: lower value, same-sign slope not decreasing: cubic between stp and sty if
        # bracketed, else the bound.
        if bracketed:
            stpf, _ = _cubic_min(stp, fp, dp, sty, fy, dy)
        elif stp > stx:
            stpf = stmax
        else:
            stpf = stmin
    # New interval: stx keeps the least value; sty the other end of a bracket.
    if fp > fx:
        sty, fy, dy = stp, fp, dp
    else:
        if opposite:
            sty, fy, dy = stx, fx, dx
        stx, fx, dx = stp, fp, dp
    return stx, fx, dx, sty, fy, dy, stpf, bracketed


def strong_wolfe(evaluate: Callable[[float], Tuple[float, float]], f0: float, d0: float,
                 step: float = 1.0, c1: float = 1e-4, c2: float = 0.9, xtol: float = 1e-14,
                 step_min: float = 1e-100, step_max: float = 1e100,
                 max_evaluations: int = 100) -> LineSearchResult:
    """Search along a descent direction for a step satisfying the strong Wolfe conditions.

    Args:
        evaluate: a -> (phi(a), phi'(a)); may return non-finite values (the search then fails
            with a message saying so, and the caller decides what to do).
        f0, d0: phi(0) and phi'(0); ``d0`` must be < 0.
        step: the first trial step (> 0).
        c1, c2: sufficient-decrease and curvature constants, 0 < c1 < c2 < 1.
        xtol: relative width of the interval below which the search gives up.
        step_min, step_max: bounds of the step.
        max_evaluations: evaluations allowed before giving up.

    Returns:
        :class:`LineSearchResult`; ``ok`` is false when the search could not satisfy the
        conditions (rounding, bounds, too many evaluations, non-finite values).
    """
    if not (0 < c1 < c2 < 1):
        raise ValueError(f"line search constants must satisfy 0 < c1 < c2 < 1; got c1={c1}, "
                         f"c2={c2}")
    if not d0 < 0:
        return LineSearchResult(False, 0.0, f0, d0, 0, "not a descent direction")
    if not step_min <= step <= step_max:
        return LineSearchResult(False, 0.0, f0, d0, 0, f"first step {step} outside bounds")
    xtrapl, xtrapu = 1.1, 4.0
    gtest = c1 * d0
    width, width1 = step_max - step_min, (step_max - step_min) / 0.5
    stx, fx, dx = 0.0, f0, d0
    sty, fy, dy = 0.0, f0, d0
    stmin, stmax = 0.0, step + xtrapu * step
    bracketed, stage = False, 1
    stp = step
    for n in range(1, max_evaluations + 1):
        f, d = evaluate(stp)
        evaluated = stp
        if not (math.isfinite(f) and math.isfinite(d)):
            return LineSearchResult(False, stp, f, d, n, "non-finite loss or slope")
        ftest = f0 + stp * gtest
        if stage == 1 and f <= ftest and d >= 0:
            stage = 2
        if f <= ftest and abs(d) <= c2 * -d0:
            return LineSearchResult(True, stp, f, d, n, "strong Wolfe conditions hold")
        if bracketed and (stp <= stmin or stp >= stmax):
            return LineSearchResult(False, stp, f, d, n, "rounding errors prevent progress")
        if bracketed and stmax - stmin <= xtol * stmax:
            return LineSearchResult(False, stp, f, d, n, "interval narrower than xtol")
        if stp == step_max and f <= ftest and d <= gtest:
            return LineSearchResult(False, stp, f, d, n, "step reached step_max")
        if stp == step_min and (f > ftest or d >= gtest):
            return LineSearchResult(False, stp, f, d, n, "step reached step_min")
        if stage == 1 and fx >= f > ftest:
            # Before the function has decreased enough, search on the modified function
            # psi(a) = phi(a) - phi(0) - c1 a phi'(0), whose minimizers satisfy both conditions.
            stx, fxm, dxm, sty, fym, dym, stp, bracketed = _safeguarded_step(
                stx, fx - stx * gtest, dx - gtest, sty, fy - sty * gtest, dy - gtest,
                stp, f - stp * gtest, d - gtest, bracketed, stmin, stmax)
            fx, fy = fxm + stx * gtest, fym + sty * gtest
            dx, dy = dxm + gtest, dym + gtest
        else:
            stx, fx, dx, sty, fy, dy, stp, bracketed = _safeguarded_step(
                stx, fx, dx, sty, fy, dy, stp, f, d, bracketed, stmin, stmax)
        if bracketed:
            # Bisect when the interval has not shrunk enough over two trials.
            if abs(sty - stx) >= 0.66 * width1:
                stp = stx + 0.5 * (sty - stx)
            width1, width = width, abs(sty - stx)
            stmin, stmax = min(stx, sty), max(stx, sty)
        else:
            stmin, stmax = stp + xtrapl * (stp - stx), stp + xtrapu * (stp - stx)
        stp = min(max(stp, step_min), step_max)
        if bracketed and (stp <= stmin or stp >= stmax or stmax - stmin <= xtol * stmax):
            stp = stx  # no progress possible: evaluate the best point so far once more
    return LineSearchResult(False, evaluated, f, d, max_evaluations,
                            f"no acceptable step after {max_evaluations} evaluations")
