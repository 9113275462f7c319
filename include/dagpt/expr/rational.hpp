// Exact rational arithmetic on decimal literals, for the evaluator: a small unsigned big integer
// (base 2^32) and a signed fraction, with a correctly rounded (round-half-even) conversion to double.
// Only what evaluation needs: +, -, *, /, comparison, shifts.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace dagpt::expr {

class BigUInt {
 public:
  BigUInt() = default;
  explicit BigUInt(std::uint64_t v) {
    while (v != 0) {
      d_.push_back(static_cast<std::uint32_t>(v));
      v >>= 32U;
    }
  }
  // From a string of decimal digits (no sign).
  static BigUInt from_decimal(std::string_view digits) {
    BigUInt r;
    std::size_t i = 0;
    while (i < digits.size()) {
      const std::size_t n = std::min<std::size_t>(9, digits.size() - i);
      std::uint32_t chunk = 0;
      std::uint32_t scale = 1;
      for (std::size_t k = 0; k < n; ++k) {
        chunk = chunk * 10 + static_cast<std::uint32_t>(digits[i + k] - '0');
        scale *= 10;
      }
      r.mul_small(scale);
      r.add_small(chunk);
      i += n;
    }
    return r;
  }
  static BigUInt pow10(int n) {
    BigUInt r(1);
    for (; n >= 9; n -= 9) r.mul_small(1000000000U);
    std::uint32_t s = 1;
    for (; n > 0; --n) s *= 10;
    r.mul_small(s);
    return r;
  }

  bool is_zero() const { return d_.empty(); }
  int bit_length() const {
    if (d_.empty()) return 0;
    int b = 32 * static_cast<int>(d_.size() - 1);
    for (std::uint32_t top = d_.back(); top != 0; top >>= 1U) ++b;
    return b;
  }
  bool bit(int i) const {
    const auto w = static_cast<std::size_t>(i / 32);
    return w < d_.size() && ((d_[w] >> static_cast<unsigned>(i % 32)) & 1U) != 0;
  }

  friend int compare(const BigUInt& a, const BigUInt& b) {
    if (a.d_.size() != b.d_.size()) return a.d_.size() < b.d_.size() ? -1 : 1;
    for (std::size_t i = a.d_.size(); i-- > 0;) {
      if (a.d_[i] != b.d_[i]) return a.d_[i] < b.d_[i] ? -1 : 1;
    }
    return 0;
  }
  friend BigUInt operator+(const BigUInt& a, const BigUInt& b) {
    BigUInt r;
    const std::size_t n = std::max(a.d_.size(), b.d_.size());
    r.d_.resize(n + 1);
    std::uint64_t carry = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t s = carry + (i < a.d_.size() ? a.d_[i] : 0U) + (i < b.d_.size() ? b.d_[i] : 0U);
      r.d_[i] = static_cast<std::uint32_t>(s);
      carry = s >> 32U;
    }
    r.d_[n] = static_cast<std::uint32_t>(carry);
    r.trim();
    return r;
  }
  // a - b for a >= b.
  friend BigUInt operator-(const BigUInt& a, const BigUInt& b) {
    BigUInt r = a;
    std::int64_t borrow = 0;
    for (std::size_t i = 0; i < r.d_.size(); ++i) {
      std::int64_t s = static_cast<std::int64_t>(r.d_[i]) - borrow - (i < b.d_.size() ? b.d_[i] : 0);
      borrow = s < 0 ? 1 : 0;
      if (s < 0) s += std::int64_t{1} << 32U;
      r.d_[i] = static_cast<std::uint32_t>(s);
    }
    r.trim();
    return r;
  }
  friend BigUInt operator*(const BigUInt& a, const BigUInt& b) {
    if (a.is_zero() || b.is_zero()) return {};
    BigUInt r;
    r.d_.assign(a.d_.size() + b.d_.size(), 0);
    for (std::size_t i = 0; i < a.d_.size(); ++i) {
      std::uint64_t carry = 0;
      for (std::size_t j = 0; j < b.d_.size(); ++j) {
        const std::uint64_t t = static_cast<std::uint64_t>(a.d_[i]) * b.d_[j] + r.d_[i + j] + carry;
        r.d_[i + j] = static_cast<std::uint32_t>(t);
        carry = t >> 32U;
      }
      r.d_[i + b.d_.size()] = static_cast<std::uint32_t>(carry);
    }
    r.trim();
    return r;
  }
  BigUInt shifted_left(int bits) const {
    if (is_zero() || bits == 0) return *this;
    BigUInt r;
    const auto words = static_cast<std::size_t>(bits / 32);
    const auto rest = static_cast<unsigned>(bits % 32);
    r.d_.assign(words, 0);
    std::uint32_t carry = 0;
    for (std::uint32_t w : d_) {
      r.d_.push_back(rest == 0 ? w : (w << rest) | carry);
      carry = rest == 0 ? 0 : w >> (32U - rest);
    }
    if (carry != 0) r.d_.push_back(carry);
    return r;
  }
  BigUInt shifted_right(int bits) const {
    const auto words = static_cast<std::size_t>(bits / 32);
    const auto rest = static_cast<unsigned>(bits % 32);
    if (words >= d_.size()) return {};
    BigUInt r;
    r.d_.assign(d_.begin() + static_cast<std::ptrdiff_t>(words), d_.end());
    if (rest != 0) {
      for (std::size_t i = 0; i < r.d_.size(); ++i) {
        const std::uint32_t hi = i + 1 < r.d_.size() ? r.d_[i + 1] : 0U;
        r.d_[i] = (r.d_[i] >> rest) | (hi << (32U - rest));
      }
    }
    r.trim();
    return r;
  }

  // *this -= b, for *this >= b; no allocation.
  void sub_in_place(const BigUInt& b) {
    std::int64_t borrow = 0;
    for (std::size_t i = 0; i < d_.size(); ++i) {
      if (i >= b.d_.size() && borrow == 0) break;
      std::int64_t s = static_cast<std::int64_t>(d_[i]) - borrow - (i < b.d_.size() ? b.d_[i] : 0);
      borrow = s < 0 ? 1 : 0;
      if (s < 0) s += std::int64_t{1} << 32U;
      d_[i] = static_cast<std::uint32_t>(s);
    }
    trim();
  }
  // *this >>= 1; no allocation.
  void shr1_in_place() {
    for (std::size_t i = 0; i < d_.size(); ++i) {
      const std::uint32_t hi = i + 1 < d_.size() ? d_[i + 1] : 0U;
      d_[i] = (d_[i] >> 1U) | (hi << 31U);
    }
    trim();
  }

 private:
  void mul_small(std::uint32_t m) {
    std::uint64_t carry = 0;
    for (auto& w : d_) {
      const std::uint64_t t = static_cast<std::uint64_t>(w) * m + carry;
      w = static_cast<std::uint32_t>(t);
      carry = t >> 32U;
    }
    if (carry != 0) d_.push_back(static_cast<std::uint32_t>(carry));
  }
  void add_small(std::uint32_t v) {
    std::uint64_t carry = v;
    for (std::size_t i = 0; i < d_.size() && carry != 0; ++i) {
      const std::uint64_t t = static_cast<std::uint64_t>(d_[i]) + carry;
      d_[i] = static_cast<std::uint32_t>(t);
      carry = t >> 32U;
    }
    if (carry != 0) d_.push_back(static_cast<std::uint32_t>(carry));
  }
  void trim() {
    while (!d_.empty() && d_.back() == 0) d_.pop_back();
  }

  std::vector<std::uint32_t> d_;  // little-endian base-2^32 digits, no leading zeros
};

// A signed fraction num/den with den > 0 (not reduced: values stay small for expressions).
struct Rational {
  bool negative = false;
  BigUInt num;
  BigUInt den{1};

  bool is_zero() const { return num.is_zero(); }

  // The exact value of a decimal literal's text ("-12.5", "5.", ".5", "1e-3", "007").
  static Rational from_decimal(std::string_view t) {
    Rational r;
    while (!t.empty() && (t[0] == '-' || t[0] == '+')) {
      r.negative = r.negative != (t[0] == '-');
      t.remove_prefix(1);
    }
    std::string digits;
    int exp10 = 0;
    std::size_t i = 0;
    for (; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i) digits.push_back(t[i]);
    if (i < t.size() && t[i] == '.') {
      for (++i; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i) {
        digits.push_back(t[i]);
        --exp10;
      }
    }
    if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
      ++i;
      bool eneg = false;
      if (i < t.size() && (t[i] == '+' || t[i] == '-')) eneg = t[i++] == '-';
      long e = 0;
      for (; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i) e = std::min(e * 10 + (t[i] - '0'), 100000L);
      exp10 += static_cast<int>(eneg ? -e : e);
    }
    // A zero mantissa is the only way past the parser's range check with a huge exponent ("0e-99999"):
    // skip the exponent, or its 10^|e| would make every later operation slow.
    if (digits.find_first_not_of('0') == std::string::npos) return Rational{};
    r.num = BigUInt::from_decimal(digits);
    if (exp10 >= 0) {
      r.num = r.num * BigUInt::pow10(exp10);
    } else {
      r.den = BigUInt::pow10(-exp10);
    }
    if (r.num.is_zero()) r.negative = false;
    return r;
  }

  // The exact value of a finite double (a dyadic fraction).
  static Rational from_double(double v) {
    Rational r;
    if (v == 0 || !std::isfinite(v)) return r;
    r.negative = v < 0;
    int e = 0;
    const double f = std::frexp(std::abs(v), &e);  // v = f * 2^e, f in [0.5, 1)
    const auto mant = static_cast<std::uint64_t>(std::ldexp(f, 53));
    const int shift = e - 53;
    r.num = BigUInt(mant);
    if (shift >= 0) {
      r.num = r.num.shifted_left(shift);
    } else {
      r.den = BigUInt(1).shifted_left(-shift);
    }
    return r;
  }

  friend Rational operator-(Rational a) {
    if (!a.is_zero()) a.negative = !a.negative;
    return a;
  }
  friend Rational operator+(const Rational& a, const Rational& b) {
    BigUInt x = a.num * b.den;
    BigUInt y = b.num * a.den;
    Rational r;
    r.den = a.den * b.den;
    if (a.negative == b.negative) {
      r.num = x + y;
      r.negative = a.negative;
    } else if (compare(x, y) >= 0) {
      r.num = x - y;
      r.negative = a.negative;
    } else {
      r.num = y - x;
      r.negative = b.negative;
    }
    if (r.num.is_zero()) r.negative = false;
    return r;
  }
  friend Rational operator-(const Rational& a, const Rational& b) { return a + (-b); }
  friend Rational operator*(const Rational& a, const Rational& b) {
    Rational r;
    r.num = a.num * b.num;
    r.den = a.den * b.den;
    r.negative = !r.num.is_zero() && a.negative != b.negative;
    return r;
  }
  // a / b for b != 0.
  friend Rational operator/(const Rational& a, const Rational& b) {
    Rational r;
    r.num = a.num * b.den;
    r.den = a.den * b.num;
    r.negative = !r.num.is_zero() && a.negative != b.negative;
    return r;
  }

  // The nearest double (ties to even), with gradual underflow; +-inf beyond the double range.
  double to_double() const {
    if (num.is_zero()) return negative ? -0.0 : 0.0;
    // Scale so that the integer quotient q = floor(num * 2^s / den) has exactly 66 bits, then round q
    // to the precision the result's exponent allows, using the remainder as a sticky bit.
    const int e = num.bit_length() - den.bit_length();
    const int s = 65 - e;
    BigUInt n = s > 0 ? num.shifted_left(s) : num;
    BigUInt d = s < 0 ? den.shifted_left(-s) : den;
    // q has 65 or 66 bits; long division by shift-and-subtract.
    std::uint64_t qhi = 0;  // bits 64..65
    std::uint64_t qlo = 0;
    BigUInt shifted = d.shifted_left(66);  // d * 2^b, shifted right in place as b falls
    for (int b = 66; b >= 0; --b, shifted.shr1_in_place()) {
      if (compare(n, shifted) >= 0) {
        n.sub_in_place(shifted);
        if (b >= 64) {
          qhi |= std::uint64_t{1} << static_cast<unsigned>(b - 64);
        } else {
          qlo |= std::uint64_t{1} << static_cast<unsigned>(b);
        }
      }
    }
    const bool sticky_rest = !n.is_zero();
    // value = q * 2^-s, q = qhi * 2^64 + qlo. Bit length of q:
    int qbits = 64;
    if (qhi != 0) {
      qbits = 64;
      for (std::uint64_t t = qhi; t != 0; t >>= 1U) ++qbits;
    } else {
      qbits = 0;
      for (std::uint64_t t = qlo; t != 0; t >>= 1U) ++qbits;
    }
    const int exponent = qbits - 1 - s;  // value in [2^exponent, 2^(exponent+1))
    if (exponent > 1023)
      return negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
    int precision = 53;
    if (exponent < -1022) precision = 53 - (-1022 - exponent);  // subnormal
    if (precision < 0) return negative ? -0.0 : 0.0;
    const int drop = qbits - precision;  // low bits of q to round away (>= 12 here)
    // mantissa = q >> drop, with round-half-even on the dropped bits and the sticky remainder.
    auto qbit = [&](int i) -> bool {
      if (i >= 64) return ((qhi >> static_cast<unsigned>(i - 64)) & 1U) != 0;
      return ((qlo >> static_cast<unsigned>(i)) & 1U) != 0;
    };
    std::uint64_t mant = 0;
    for (int i = qbits - 1; i >= drop; --i) mant = (mant << 1U) | (qbit(i) ? 1U : 0U);
    const bool half = drop > 0 && qbit(drop - 1);
    bool below = sticky_rest;
    for (int i = 0; i < drop - 1 && !below; ++i) below = qbit(i);
    if (half && (below || (mant & 1U) != 0)) ++mant;
    double v = std::ldexp(static_cast<double>(mant), drop - s);
    return negative ? -v : v;
  }
};

}  // namespace dagpt::expr
