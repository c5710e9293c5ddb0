// Rational arithmetic with overflow checks, and the lenient number parser for answers.
#include "synthetic/rational.h"

#include <algorithm>
#include <cctype>
#include <regex>

namespace posttrain::synthetic {

namespace {

__int128 gcd128(__int128 a, __int128 b) {
  if (a < 0) a = -a;
  if (b < 0) b = -b;
  while (b != 0) {
    __int128 t = a % b;
    a = b;
    b = t;
  }
  return a;
}

constexpr __int128 kMax = INT64_MAX;

}  // namespace

Rational Rational::from_wide(__int128 num, __int128 den) {
  if (den == 0) throw MathError("division by zero");
  if (den < 0) {
    num = -num;
    den = -den;
  }
  __int128 g = gcd128(num, den);
  if (g > 1) {
    num /= g;
    den /= g;
  }
  if (num > kMax || num < -kMax || den > kMax) {
    throw MathError("number too large for exact arithmetic (64-bit numerator/denominator)");
  }
  Rational r;
  r.num_ = static_cast<int64_t>(num);
  r.den_ = static_cast<int64_t>(den);
  return r;
}

Rational::Rational(int64_t num, int64_t den) { *this = from_wide(num, den); }

Rational Rational::operator+(const Rational& o) const {
  return from_wide(static_cast<__int128>(num_) * o.den_ + static_cast<__int128>(o.num_) * den_,
                   static_cast<__int128>(den_) * o.den_);
}
Rational Rational::operator-(const Rational& o) const { return *this + (-o); }
Rational Rational::operator*(const Rational& o) const {
  return from_wide(static_cast<__int128>(num_) * o.num_, static_cast<__int128>(den_) * o.den_);
}
Rational Rational::operator/(const Rational& o) const {
  if (o.num_ == 0) throw MathError("division by zero");
  return from_wide(static_cast<__int128>(num_) * o.den_, static_cast<__int128>(den_) * o.num_);
}
Rational Rational::operator-() const { return from_wide(-static_cast<__int128>(num_), den_); }
bool Rational::operator<(const Rational& o) const {
  return static_cast<__int128>(num_) * o.den_ < static_cast<__int128>(o.num_) * den_;
}

Rational Rational::pow(int64_t exponent) const {
  if (exponent < 0) return Rational(1) / pow(-exponent);
  if (exponent > 4096) throw MathError("exponent too large");
  Rational result(1), base = *this;
  while (exponent > 0) {
    if (exponent & 1) result = result * base;
    exponent >>= 1;
    if (exponent > 0) base = base * base;
  }
  return result;
}

std::string Rational::str() const {
  return den_ == 1 ? std::to_string(num_) : std::to_string(num_) + "/" + std::to_string(den_);
}

std::string Rational::decimal_or_fraction() const {
  if (den_ == 1) return str();
  int64_t d = den_;
  int twos = 0, fives = 0;
  while (d % 2 == 0) d /= 2, ++twos;
  while (d % 5 == 0) d /= 5, ++fives;
  if (d != 1) return str();
  int digits = twos > fives ? twos : fives;
  __int128 scale = 1;
  for (int i = 0; i < digits; ++i) scale *= 10;
  __int128 scaled = static_cast<__int128>(num_) * (scale / den_);
  bool neg = scaled < 0;
  if (neg) scaled = -scaled;
  std::string s;
  for (__int128 v = scaled; v > 0 || static_cast<int>(s.size()) <= digits; v /= 10) {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
  }
  s.insert(s.end() - digits, '.');
  return (neg ? "-" : "") + s;
}

namespace {

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

// "-1,234.5" style decimal with optional thousands separators.
std::optional<Rational> parse_decimal(const std::string& s) {
  static const std::regex re(R"(^([+-]?)(\d{1,3}(?:,\d{3})+|\d*)(?:\.(\d+))?$)");
  std::smatch m;
  if (!std::regex_match(s, m, re)) return std::nullopt;
  std::string whole = m[2].str(), frac = m[3].str();
  if (whole.empty() && frac.empty()) return std::nullopt;
  whole.erase(std::remove(whole.begin(), whole.end(), ','), whole.end());
  if (whole.size() + frac.size() > 18) return std::nullopt;
  int64_t n = 0;
  for (char c : whole + frac) n = n * 10 + (c - '0');
  int64_t den = 1;
  for (size_t i = 0; i < frac.size(); ++i) den *= 10;
  Rational r(n, den);
  return m[1].str() == "-" ? -r : r;
}

}  // namespace

std::optional<Rational> parse_number(const std::string& text) {
  std::string s = trim(text);
  // Strip LaTeX wrappers and units: $...$, \text{...}, \mathrm{...}, trailing period.
  static const std::regex text_re(R"(\\(?:text|mathrm|mbox)\{[^{}]*\})");
  s = std::regex_replace(s, text_re, "");
  s.erase(std::remove(s.begin(), s.end(), '$'), s.end());
  s = trim(s);
  while (!s.empty() && (s.back() == '.' || s.back() == '!')) s.pop_back();
  s = trim(s);
  std::string cleaned;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 2, "\\!") == 0 || s.compare(i, 2, "\\,") == 0) {
      ++i;  // LaTeX thin spaces inside numbers
      continue;
    }
    if (s[i] == ' ') continue;
    cleaned += s[i];
  }
  s = cleaned;
  if (s.empty()) return std::nullopt;
  try {
    bool percent = s.back() == '%';
    if (percent) s.pop_back();
    std::optional<Rational> value;
    static const std::regex frac_re(R"(^([+-]?)\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}$)");
    std::smatch m;
    size_t slash = s.find('/');
    if (std::regex_match(s, m, frac_re)) {
      auto a = parse_decimal(m[2].str()), b = parse_decimal(m[3].str());
      if (!a || !b || b->num() == 0) return std::nullopt;
      value = *a / *b;
      if (m[1].str() == "-") value = -*value;
    } else if (slash != std::string::npos) {
      auto a = parse_decimal(s.substr(0, slash)), b = parse_decimal(s.substr(slash + 1));
      if (!a || !b || b->num() == 0) return std::nullopt;
      value = *a / *b;
    } else {
      value = parse_decimal(s);
    }
    if (value && percent) value = *value / Rational(100);
    return value;
  } catch (const MathError&) {
    return std::nullopt;
  }
}

}  // namespace posttrain::synthetic
