"""Go's trigonometric and hyperbolic functions (Go 1.19, linux/amd64), bit for bit.

The pure-Go sources these follow are Cephes (sin, cos, tan, atan, asin) and FreeBSD msun
(asinh, acosh, atanh) ports; sinh, cosh and tanh build on Go's Exp. Arguments of 2**29 and
more are reduced by Pi/4 with Payne-Hanek, as trig_reduce.go does. See gomath.py for why
Python's own `math` cannot be used.
"""

from __future__ import annotations

import math
from fractions import Fraction

from monitor.promql.gomath import (
    FOUR_OVER_PI,
    HALF_PI,
    INF,
    M64,
    NAN,
    PI,
    PI_DECIMAL,
    QUARTER_PI,
    exp,
    float_bits,
    float_from_bits,
    log,
    log1p,
    sqrt,
)

# --- trigonometry: Go's sin.go, tan.go, trig_reduce.go (Cephes) --------------------------

_PI4A = 7.85398125648498535156e-1
_PI4B = 3.77489470793079817668e-8
_PI4C = 2.69515142907905952645e-15
_REDUCE_THRESHOLD = float(1 << 29)
_SIN = (1.58962301576546568060e-10, -2.50507477628578072866e-8, 2.75573136213857245213e-6,
        -1.98412698295895385996e-4, 8.33333333332211858878e-3, -1.66666666666666307295e-1)
_COS = (-1.13585365213876817300e-11, 2.08757008419747316778e-9, -2.75573141792967388112e-7,
        2.48015872888517045348e-5, -1.38888888888730564116e-3, 4.16666666666665929218e-2)
_TAN_P = (-1.30936939181383777646e4, 1.15351664838587416140e6, -1.79565251976484877988e7)
_TAN_Q = (1.36812963470692954678e4, -1.32089234440210967447e6, 2.50083801823357915839e7,
          -5.38695755929454629881e7)
_M_PI4 = (
    0x0000000000000001, 0x45F306DC9C882A53, 0xF84EAFA3EA69BB81, 0xB6C52B3278872083,
    0xFCA2C757BD778AC3, 0x6E48DC74849BA5C0, 0x0C925DD413A32439, 0xFC3BD63962534E7D,
    0xD1046BEA5D768909, 0xD338E04D68BEFC82, 0x7323AC7306A673E9, 0x3908BF177BF25076,
    0x3FF12FFFBC0B301F, 0xDE5E2316B414DA3E, 0xDA6CFD9E4F96136E, 0x9E8C7ECD3CBFD45A,
    0xEA4F758FD7CBE2F6, 0x7A0E73EF14A525D4, 0xD7F6BF623F1ABA10, 0xAC06608DF8F6D757,
)


def _trig_reduce(x: float) -> tuple[int, float]:
    """Payne-Hanek reduction of x >= 2**29 by Pi/4: (octant j, remainder z)."""
    if x < QUARTER_PI:
        return 0, x
    ix = float_bits(x)
    exponent = ((ix >> 52) & 0x7FF) - 1023 - 52
    ix = (ix & ~(0x7FF << 52)) | (1 << 52)
    digit, bitshift = divmod(exponent + 61, 64)

    def window(i: int) -> int:
        return ((_M_PI4[i] << bitshift) & M64) | (_M_PI4[i + 1] >> (64 - bitshift))

    z0, z1, z2 = window(digit), window(digit + 1), window(digit + 2)
    z2hi = (z2 * ix) >> 64
    z1_product = z1 * ix
    z1hi, z1lo = z1_product >> 64, z1_product & M64
    z0lo = (z0 * ix) & M64
    low_sum = z1lo + z2hi
    lo, carry = low_sum & M64, low_sum >> 64
    hi = (z0lo + z1hi + carry) & M64
    j = hi >> 61
    hi = ((hi << 3) & M64) | (lo >> 61)
    lz = 64 - hi.bit_length()
    e = 1023 - (lz + 1)
    hi = ((hi << (lz + 1)) & M64) | (lo >> (64 - (lz + 1)))
    hi >>= 12
    hi |= e << 52
    z = float_from_bits(hi)
    if j & 1:
        j = (j + 1) & 7
        z -= 1
    return j, z * QUARTER_PI


def _octant(x: float) -> tuple[int, float]:
    if x >= _REDUCE_THRESHOLD:
        return _trig_reduce(x)
    j = int(x * FOUR_OVER_PI)
    y = float(j)
    if j & 1:
        j += 1
        y += 1
    return j & 7, ((x - y * _PI4A) - y * _PI4B) - y * _PI4C


def _sin_poly(z: float, zz: float) -> float:
    s = _SIN
    return z + z * zz * ((((((s[0] * zz) + s[1]) * zz + s[2]) * zz + s[3]) * zz + s[4]) * zz
                         + s[5])


def _cos_poly(zz: float) -> float:
    c = _COS
    return 1.0 - 0.5 * zz + zz * zz * ((((((c[0] * zz) + c[1]) * zz + c[2]) * zz + c[3]) * zz
                                       + c[4]) * zz + c[5])


def sin(x: float) -> float:
    if x == 0 or math.isnan(x):
        return x
    if math.isinf(x):
        return NAN
    sign = x < 0
    j, z = _octant(abs(x))
    if j > 3:
        sign = not sign
        j -= 4
    zz = z * z
    y = _cos_poly(zz) if j in (1, 2) else _sin_poly(z, zz)
    return -y if sign else y


def cos(x: float) -> float:
    if not math.isfinite(x):
        return NAN
    sign = False
    j, z = _octant(abs(x))
    if j > 3:
        j -= 4
        sign = not sign
    if j > 1:
        sign = not sign
    zz = z * z
    y = _sin_poly(z, zz) if j in (1, 2) else _cos_poly(zz)
    return -y if sign else y


def tan(x: float) -> float:
    if x == 0 or math.isnan(x):
        return x
    if math.isinf(x):
        return NAN
    sign = x < 0
    j, z = _octant(abs(x))
    zz = z * z
    if zz > 1e-14:
        p, q = _TAN_P, _TAN_Q
        y = z + z * (zz * (((p[0] * zz) + p[1]) * zz + p[2])
                     / ((((zz + q[0]) * zz + q[1]) * zz + q[2]) * zz + q[3]))
    else:
        y = z
    if j & 2:
        y = -1 / y
    return -y if sign else y


# --- inverse trigonometry: asin.go, atan.go ---------------------------------------------

_MOREBITS = 6.123233995736765886130e-17
_THREE_QUARTER_PI = float(3 * Fraction(PI_DECIMAL) / 4)
_TAN3PIO8 = 2.41421356237309504880


def _xatan(x: float) -> float:
    p0, p1, p2, p3, p4 = (-8.750608600031904122785e-01, -1.615753718733365076637e01,
                          -7.500855792314704667340e01, -1.228866684490136173410e02,
                          -6.485021904942025371773e01)
    q0, q1, q2, q3, q4 = (2.485846490142306297962e01, 1.650270098316988542046e02,
                          4.328810604912902668951e02, 4.853903996359136964868e02,
                          1.945506571482613964425e02)
    z = x * x
    z = z * ((((p0 * z + p1) * z + p2) * z + p3) * z + p4) / (
        ((((z + q0) * z + q1) * z + q2) * z + q3) * z + q4)
    return x * z + x


def _satan(x: float) -> float:
    if x <= 0.66:
        return _xatan(x)
    if x > _TAN3PIO8:
        return HALF_PI - _xatan(1 / x) + _MOREBITS
    return QUARTER_PI + _xatan((x - 1) / (x + 1)) + 0.5 * _MOREBITS


def atan(x: float) -> float:
    if x == 0 or math.isnan(x):
        return x
    return _satan(x) if x > 0 else -_satan(-x)


def atan2(y: float, x: float) -> float:
    """math.Atan2 (atan2.go): PromQL's `atan2` operator."""
    if math.isnan(y) or math.isnan(x):
        return NAN
    if y == 0:
        if x >= 0 and math.copysign(1.0, x) > 0:
            return math.copysign(0.0, y)
        return math.copysign(PI, y)
    if x == 0:
        return math.copysign(HALF_PI, y)
    if math.isinf(x):
        if x > 0:
            return math.copysign(QUARTER_PI if math.isinf(y) else 0.0, y)
        return math.copysign(_THREE_QUARTER_PI if math.isinf(y) else PI, y)
    if math.isinf(y):
        return math.copysign(HALF_PI, y)
    q = atan(y / x)
    if x < 0:
        return q + PI if q <= 0 else q - PI
    return q


def asin(x: float) -> float:
    if x == 0:
        return x
    sign = x < 0
    if sign:
        x = -x
    if x > 1:
        return NAN
    temp = sqrt(1 - x * x)
    temp = HALF_PI - _satan(temp / x) if x > 0.7 else _satan(x / temp)
    return -temp if sign else temp


def acos(x: float) -> float:
    return HALF_PI - asin(x)


# --- hyperbolic functions: sinh.go, tanh.go, asinh.go, acosh.go, atanh.go ----------------

def sinh(x: float) -> float:
    sign = x < 0
    if sign:
        x = -x
    if x > 21:
        temp = exp(x) * 0.5
    elif x > 0.5:
        ex = exp(x)
        temp = (ex - 1 / ex) * 0.5
    else:
        sq = x * x
        temp = (((-0.2630563213397497062819489e2 * sq - 0.2894211355989563807284660366e4) * sq
                 - 0.8991272022039509355398013511e5) * sq - 0.6307673640497716991184787251e6) * x
        temp = temp / (((sq - 0.173678953558233699533450911e3) * sq
                        + 0.1521517378790019070696485176e5) * sq
                       - 0.6307673640497716991212077277e6)
    return -temp if sign else temp


def cosh(x: float) -> float:
    x = abs(x)
    if x > 21:
        return exp(x) * 0.5
    ex = exp(x)
    return (ex + 1 / ex) * 0.5


def tanh(x: float) -> float:
    z = abs(x)
    if z > 0.5 * 8.8029691931113054295988e01:
        return -1.0 if x < 0 else 1.0
    if z >= 0.625:
        s = exp(2 * z)
        z = 1 - 2 / (s + 1)
        return -z if x < 0 else z
    if x == 0 or math.isnan(x):
        return x
    s = x * x
    return x + x * s * ((-9.64399179425052238628e-1 * s - 9.92877231001918586564e1) * s
                        - 1.61468768441708447952e3) / (
        ((s + 1.12811678491632931402e2) * s + 2.23548839060100448583e3) * s
        + 4.84406305325125486048e3)


_LN2 = 6.93147180559945286227e-01


def asinh(x: float) -> float:
    if not math.isfinite(x):
        return x
    sign = x < 0
    if sign:
        x = -x
    if x > (1 << 28):
        temp = log(x) + _LN2
    elif x > 2:
        temp = log(2 * x + 1 / (sqrt(x * x + 1) + x))
    elif x < 1.0 / (1 << 28):
        temp = x
    else:
        temp = log1p(x + x * x / (1 + sqrt(1 + x * x)))
    return -temp if sign else temp


def acosh(x: float) -> float:
    if x < 1 or math.isnan(x):
        return NAN
    if x == 1:
        return 0.0
    if x >= (1 << 28):
        return log(x) + _LN2
    if x > 2:
        return log(2 * x - 1 / (x + sqrt(x * x - 1)))
    t = x - 1
    return log1p(t + sqrt(2 * t + t * t))


def atanh(x: float) -> float:
    if x < -1 or x > 1 or math.isnan(x):
        return NAN
    if x == 1:
        return INF
    if x == -1:
        return -INF
    sign = x < 0
    if sign:
        x = -x
    if x < 1.0 / (1 << 28):
        temp = x
    elif x < 0.5:
        temp = x + x
        temp = 0.5 * log1p(temp + temp * x / (1 - x))
    else:
        temp = 0.5 * log1p((x + x) / (1 - x))
    return -temp if sign else temp
