// Rational arithmetic with overflow checks, and the lenient number parser for answers.
#include "synthetic/rational.h"

#include <algorithm>
#include <cctype>
#include <string>

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

bool digit(char c) { return c >= '0' && c <= '9'; }

// "-1,234.5" style decimal with optional thousands separators: [+-] (d{1,3} (,ddd)+ | d*)
// (.d+)?. Scanned by hand, not with std::regex, whose matcher recurses per character and
// overflows the stack on long hostile input.
std::optional<Rational> parse_decimal(const std::string& s) {
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  std::string whole, frac;
  while (i < s.size() && digit(s[i])) whole += s[i++];
  if (i < s.size() && s[i] == ',') {
    if (whole.empty() || whole.size() > 3) return std::nullopt;
    while (i < s.size() && s[i] == ',') {
      // Exactly three digits after each comma.
      if (i + 3 >= s.size() || !digit(s[i + 1]) || !digit(s[i + 2]) || !digit(s[i + 3]) ||
          (i + 4 < s.size() && digit(s[i + 4]))) {
        return std::nullopt;
      }
      whole.append(s, i + 1, 3);
      i += 4;
    }
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && digit(s[i])) frac += s[i++];
    if (frac.empty()) return std::nullopt;
  }
  if (i != s.size() || (whole.empty() && frac.empty())) return std::nullopt;
  if (whole.size() + frac.size() > 18) return std::nullopt;
  int64_t n = 0;
  for (char c : whole + frac) n = n * 10 + (c - '0');
  int64_t den = 1;
  for (size_t i = 0; i < frac.size(); ++i) den *= 10;
  Rational r(n, den);
  return negative ? -r : r;
}

// `s` without its \text{...}, \mathrm{...} and \mbox{...} groups (no braces inside).
std::string drop_text_groups(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t open = std::string::npos;
    for (const char* cmd : {"\\text{", "\\mathrm{", "\\mbox{"}) {
      size_t n = std::char_traits<char>::length(cmd);
      if (s.compare(i, n, cmd) == 0) open = i + n;
    }
    if (open != std::string::npos) {
      size_t close = s.find_first_of("{}", open);
      if (close != std::string::npos && s[close] == '}') {
        i = close + 1;
        continue;
      }
    }
    out += s[i++];
  }
  return out;
}

// Deepest \frac inside \frac read (\frac{1}{\frac{1}{2}} is depth 2); deeper is not a number.
constexpr int kMaxFracDepth = 8;

// [sign] \frac{A}{B} (also \dfrac, \tfrac) at s[*pos], A and B each a decimal or such a
// fraction; advances *pos past it. nullopt when that is not what is there.
std::optional<Rational> parse_frac(const std::string& s, size_t* pos, int depth) {
  if (depth > kMaxFracDepth) return std::nullopt;
  size_t p = *pos;
  bool negative = false;
  if (p < s.size() && (s[p] == '-' || s[p] == '+')) negative = s[p++] == '-';
  size_t cmd = s.compare(p, 5, "\\frac") == 0 ? 5
               : (s.compare(p, 6, "\\dfrac") == 0 || s.compare(p, 6, "\\tfrac") == 0) ? 6
                                                                                      : 0;
  if (cmd == 0) return std::nullopt;
  p += cmd;
  std::optional<Rational> parts[2];
  for (auto& part : parts) {
    if (p >= s.size() || s[p] != '{') return std::nullopt;
    ++p;
    size_t inner = p;
    part = parse_frac(s, &inner, depth + 1);
    if (part) {
      p = inner;
    } else {
      size_t close = s.find_first_of("{}", p);
      if (close == std::string::npos || s[close] != '}') return std::nullopt;
      part = parse_decimal(s.substr(p, close - p));
      p = close;
    }
    if (!part || p >= s.size() || s[p] != '}') return std::nullopt;
    ++p;
  }
  if (parts[1]->num() == 0) return std::nullopt;
  Rational value = *parts[0] / *parts[1];
  *pos = p;
  return negative ? -value : value;
}

}  // namespace

std::optional<Rational> parse_number(const std::string& text) {
  std::string s = trim(text);
  // Strip LaTeX wrappers and units: $...$, \text{...}, \mathrm{...}, trailing period.
  s = drop_text_groups(s);
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
    size_t slash = s.find('/');
    if (s.find("frac") != std::string::npos) {
      size_t pos = 0;
      value = parse_frac(s, &pos, 1);
      if (!value || pos != s.size()) return std::nullopt;
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
