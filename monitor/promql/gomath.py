"""Go's `math` package as Prometheus 2.42 runs it (Go 1.19, linux/amd64), bit for bit.

Python's `math` calls the C library, which rounds differently from Go in the last bit for
about one argument in ten (and Go's Log10(x) is Log(x) * (1/Ln10), so even simple arguments
can differ). To give Prometheus's exact answers, the functions PromQL exposes are ported:

- `exp` and `log` follow Go's amd64 assembly. Exp takes the FMA path, as Go does on every
  x86-64 CPU with AVX and FMA (all since 2013); `_fma` emulates the fused multiply-add exactly.
  A CPU without FMA, or an arm64 Prometheus, can differ in the last bit.
- `log1p`, `log2` and `log10` follow the pure-Go sources; the trigonometric and hyperbolic
  functions, which build on these, live in gotrig.py.
- `go_pow` is Go's Pow, for the `^` operator (C's pow differs in about half of all
  non-integer cases; gotrig.atan2 is the `atan2` operator's);
- `sqrt`, `floor` and `ceil` are exact operations, so only their special cases need care;
  `go_max`, `go_min` and `go_div` give Go's answers for NaN, infinities and signed zeros.

Constant expressions such as `4 / Pi` are evaluated exactly, as the Go compiler does, from the
decimal constants of Go's math package.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from fractions import Fraction

PI_DECIMAL = Decimal("3.14159265358979323846264338327950288419716939937510582097494459")
_LN2_DEC = Decimal("0.693147180559945309417232121458176568075500134360255254120680009")
_LN10_DEC = Decimal("2.30258509299404568401799145468436420760110148862877297603332790")

PI = float(PI_DECIMAL)
HALF_PI = PI / 2
QUARTER_PI = PI / 4
FOUR_OVER_PI = float(4 / Fraction(PI_DECIMAL))
_INV_LN2 = float(1 / Fraction(_LN2_DEC))
_INV_LN10 = float(1 / Fraction(_LN10_DEC))

M64 = (1 << 64) - 1
_SIGN = 1 << 63
_POS_INF_BITS = 0x7FF0000000000000
_NEG_INF_BITS = 0xFFF0000000000000
INF = math.inf
NAN = math.nan


def float_bits(x: float) -> int:
    bits: int = struct.unpack("<Q", struct.pack("<d", x))[0]
    return bits


def float_from_bits(bits: int) -> float:
    value: float = struct.unpack("<d", struct.pack("<Q", bits & M64))[0]
    return value


def _fma(a: float, b: float, c: float) -> float:
    """a*b + c with a single rounding (the VFMADD instructions), for finite arguments."""
    na, da = a.as_integer_ratio()
    nb, db = b.as_integer_ratio()
    nc, dc = c.as_integer_ratio()
    product = na * nb
    num, den = product, da * db
    if den >= dc:
        num += nc * (den // dc)
    else:
        num = num * (dc // den) + nc
        den = dc
    if num == 0:
        return a * b + c if product == 0 else 0.0
    return num / den  # int / int is correctly rounded


# --- exp: Go's exp_amd64.s (Shibata's method), FMA path ---------------------------------

_LOG2E = 1.4426950408889634073599246810018920
_LN2U = 0.69314718055966295651160180568695068359375
_LN2L = 0.28235290563031577122588448175013436025525412068e-12
_EXP_OVERFLOW = 7.09782712893384e02
_EXP_TAYLOR = (2.4801587301587301587e-5, 1.9841269841269841270e-4, 1.3888888888888888889e-3,
               8.3333333333333333333e-3, 4.1666666666666666667e-2, 1.6666666666666666667e-1,
               0.5, 1.0)


def _cvtsd2sl(x: float) -> int:
    """CVTSD2SL: round to nearest even int32; out of range gives the 'integer indefinite'."""
    rounded = round(x)
    return rounded if -(1 << 31) <= rounded < (1 << 31) else -(1 << 31)


def exp(x: float) -> float:
    bits = float_bits(x)
    if bits & ~_SIGN & M64 >= _POS_INF_BITS:
        return 0.0 if bits == _NEG_INF_BITS else x
    if x > _EXP_OVERFLOW:
        return INF
    k = _cvtsd2sl(_LOG2E * x)
    biased = k + 0x3FF
    if biased < -52:
        return 0.0
    kf = float(k)
    r = _fma(-kf, _LN2U, x)
    r = _fma(-kf, _LN2L, r)
    r *= 0.0625
    poly = _EXP_TAYLOR[0]
    for coefficient in _EXP_TAYLOR[1:]:
        poly = _fma(poly, r, coefficient)
    r *= poly
    for _ in range(3):
        r *= r + 2.0
    r = _fma(r + 2.0, r, 1.0)
    if biased <= 0:
        r *= float_from_bits((biased + 0x3FE) << 52)
        return r * float_from_bits(1 << 52)
    if biased >= 0x7FF:
        return INF
    return r * float_from_bits(biased << 52)


# --- log: Go's log_amd64.s (FreeBSD's e_log.c) -----------------------------------------

_HSQRT2 = 7.07106781186547524401e-01
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_L1, _L2, _L3, _L4 = (6.666666666666735130e-01, 3.999999999940941908e-01,
                      2.857142874366239149e-01, 2.222219843214978396e-01)
_L5, _L6, _L7 = 1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01


def log(x: float) -> float:
    bits = float_bits(x)
    if bits & ~_SIGN & M64 == 0:
        return -INF
    if bits & _SIGN:
        return NAN
    if bits >= _POS_INF_BITS:
        return x
    # The assembly's frexp ignores subnormals (exponent field 0); so does this.
    f1 = float_from_bits((bits & 0x000FFFFFFFFFFFFF) | 0x3FE0000000000000)
    k = float(((bits >> 52) & 0x7FF) - 0x3FE)
    if not f1 > _HSQRT2:
        k -= 1.0
        f1 *= 2.0
    f = f1 - 1.0
    s = f / (2.0 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (_L1 + s4 * (_L3 + s4 * (_L5 + s4 * _L7)))
    t2 = s4 * (_L2 + s4 * (_L4 + s4 * _L6))
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + (t1 + t2)) + k * _LN2_LO)) - f)


def log2(x: float) -> float:
    frac, exponent = math.frexp(x)
    if frac == 0.5:
        return float(exponent - 1)
    return log(frac) * _INV_LN2 + float(exponent)


def log10(x: float) -> float:
    return log(x) * _INV_LN10


def log1p(x: float) -> float:
    if x < -1 or math.isnan(x):
        return NAN
    if x == -1:
        return -INF
    if x == INF:
        return INF
    absx = abs(x)
    f = 0.0
    iu = 0
    k = 1
    if absx < 4.142135623730950488017e-01:
        if absx < 1.0 / (1 << 29):
            if absx < 1.0 / (1 << 54):
                return x
            return x - x * x * 0.5
        if x > -2.928932188134524755992e-01:
            k, f, iu = 0, x, 1
    c = 0.0
    if k != 0:
        if absx < (1 << 53):
            u = 1.0 + x
            iu = float_bits(u)
            k = (iu >> 52) - 1023
            c = 1.0 - (u - x) if k > 0 else x - (u - 1.0)
            c /= u
        else:
            u = x
            iu = float_bits(u)
            k = (iu >> 52) - 1023
            c = 0.0
        iu &= 0x000FFFFFFFFFFFFF
        if iu < 0x0006A09E667F3BCD:
            u = float_from_bits(iu | 0x3FF0000000000000)
        else:
            k += 1
            u = float_from_bits(iu | 0x3FE0000000000000)
            iu = (0x0010000000000000 - iu) >> 2
        f = u - 1.0
    hfsq = 0.5 * f * f
    kf = float(k)
    if iu == 0:
        if f == 0:
            if k == 0:
                return 0.0
            c += kf * _LN2_LO
            return kf * _LN2_HI + c
        big_r = hfsq * (1.0 - 0.66666666666666666 * f)
        if k == 0:
            return f - big_r
        return kf * _LN2_HI - ((big_r - (kf * _LN2_LO + c)) - f)
    s = f / (2.0 + f)
    z = s * s
    big_r = z * (_L1 + z * (_L2 + z * (_L3 + z * (_L4 + z * (_L5 + z * (_L6 + z * _L7))))))
    if k == 0:
        return f - (hfsq - s * (hfsq + big_r))
    return kf * _LN2_HI - ((hfsq - (s * (hfsq + big_r) + (kf * _LN2_LO + c))) - f)


def sqrt(x: float) -> float:
    return math.sqrt(x) if x >= 0 or math.isnan(x) else NAN


def floor(x: float) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return float(math.floor(x))


def ceil(x: float) -> float:
    return -floor(-x)  # as Go: Ceil(-0.5) is -0


def go_max(x: float, y: float) -> float:
    if INF in (x, y):
        return INF
    if math.isnan(x) or math.isnan(y):
        return NAN
    if x == 0 and x == y:
        return y if math.copysign(1.0, x) < 0 else x
    return x if x > y else y


def go_min(x: float, y: float) -> float:
    if -INF in (x, y):
        return -INF
    if math.isnan(x) or math.isnan(y):
        return NAN
    if x == 0 and x == y:
        return x if math.copysign(1.0, x) < 0 else y
    return x if x < y else y


def go_div(a: float, b: float) -> float:
    """a / b with IEEE semantics: ±Inf or NaN for a zero divisor instead of an exception."""
    if b == 0:
        if a == 0 or math.isnan(a):
            return NAN
        return INF if (a > 0) == (math.copysign(1.0, b) > 0) else -INF
    return a / b


def _is_odd_int(x: float) -> bool:
    if not math.isfinite(x) or x != math.trunc(x):
        return False
    return abs(x) < 2.0 ** 63 and int(x) & 1 == 1


def _ldexp(fraction: float, exponent: int) -> float:
    try:
        return math.ldexp(fraction, exponent)
    except OverflowError:
        return math.copysign(INF, fraction)


def go_pow(x: float, y: float) -> float:
    """math.Pow (pow.go): PromQL's `^`. Non-integer powers go through Exp(yf * Log(x))."""
    if y == 0 or x == 1:
        return 1.0
    if math.isnan(x) or math.isnan(y):
        return NAN
    if x == 0:
        if y < 0:
            return math.copysign(INF, x) if _is_odd_int(y) else INF
        return x if _is_odd_int(y) else 0.0
    if math.isinf(y):
        if x == -1:
            return 1.0
        return 0.0 if (abs(x) < 1) == (y > 0) else INF
    if math.isinf(x):
        if x < 0:
            return go_pow(1 / x, -y)
        return 0.0 if y < 0 else INF
    if y == 0.5:
        return sqrt(x)
    if y == -0.5:
        return go_div(1.0, sqrt(x))
    yf, yi = math.modf(abs(y))
    if yf != 0 and x < 0:
        return NAN
    if yi >= 2.0 ** 63:
        if x == -1:
            return 1.0
        return 0.0 if (abs(x) < 1) == (y > 0) else INF
    a1, ae = 1.0, 0
    if yf != 0:
        if yf > 0.5:
            yf -= 1
            yi += 1
        a1 = exp(yf * log(x))
    x1, xe = math.frexp(x)
    i = int(yi)
    while i != 0:
        if xe < -(1 << 12) or xe > (1 << 12):
            ae += xe  # the final Ldexp under- or overflows anyway
            break
        if i & 1:
            a1 *= x1
            ae += xe
        x1 *= x1
        xe <<= 1
        if x1 < 0.5:
            x1 += x1
            xe -= 1
        i >>= 1
    if y < 0:
        a1 = go_div(1.0, a1)
        ae = -ae
    return _ldexp(a1, ae)
