// Exact rational numbers for math answers, the calculator tool and step checking.
// 64-bit numerator/denominator kept in lowest terms with a positive denominator; every
// operation checks for overflow (through 128-bit intermediates) and throws instead of wrapping.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/error.h"

namespace posttrain::synthetic {

// Arithmetic that cannot be done exactly: overflow, division by zero, bad exponent.
class MathError : public Error {
 public:
  using Error::Error;
};

class Rational {
 public:
  Rational() = default;
  Rational(int64_t n) : num_(n) {}     // NOLINT: integers convert implicitly
  Rational(int64_t num, int64_t den);  // throws MathError when den == 0

  int64_t num() const { return num_; }
  int64_t den() const { return den_; }
  bool is_integer() const { return den_ == 1; }

  Rational operator+(const Rational& o) const;
  Rational operator-(const Rational& o) const;
  Rational operator*(const Rational& o) const;
  Rational operator/(const Rational& o) const;
  Rational operator-() const;
  Rational pow(int64_t exponent) const;
  bool operator==(const Rational& o) const { return num_ == o.num_ && den_ == o.den_; }
  bool operator!=(const Rational& o) const { return !(*this == o); }
  bool operator<(const Rational& o) const;

  // "7", "-3/4".
  std::string str() const;
  // Exact decimal when the denominator has only factors 2 and 5 ("0.75"), else str().
  std::string decimal_or_fraction() const;

 private:
  static Rational from_wide(__int128 num, __int128 den);
  int64_t num_ = 0;
  int64_t den_ = 1;
};

// Parses a final answer as written by a person or a model: "42", "-7", "1,234", "0.5", "-.25",
// "3/4", "\frac{3}{4}", "\dfrac{-3}{4}", "\frac{1}{\frac{1}{2}}" (nested up to 8 deep), "$12.50",
// "12%" (= 12/100), with surrounding spaces,
// "\text{...}" units and a trailing period ignored. nullopt when it is not a number.
std::optional<Rational> parse_number(const std::string& text);

}  // namespace posttrain::synthetic
