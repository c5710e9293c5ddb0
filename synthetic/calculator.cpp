// Recursive descent: expr := term (('+'|'-') term)*; term := unary (('*'|'/') unary)*;
// unary := ('+'|'-') unary | power; power := factorial ('^' unary)?; factorial := primary '!'*;
// primary := number | '(' expr ')'.
// '^' binds tighter than unary minus on its left (-2^2 = -4) and is right-associative.
#include "synthetic/calculator.h"

#include <cctype>

namespace posttrain::synthetic {

namespace {

// Maps the Unicode operator spellings to ASCII and "**" to '^'.
std::string normalize(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in.compare(i, 2, "\xC3\x97") == 0 || in.compare(i, 2, "\xC2\xB7") == 0) {
      out += '*', ++i;
    } else if (in.compare(i, 2, "\xC3\xB7") == 0) {
      out += '/', ++i;
    } else if (in.compare(i, 3, "\xE2\x88\x92") == 0) {
      out += '-', i += 2;
    } else if (in.compare(i, 2, "**") == 0) {
      out += '^', ++i;
    } else {
      out += in[i];
    }
  }
  return out;
}

class Parser {
 public:
  explicit Parser(std::string text) : s_(std::move(text)) {}

  Rational parse() {
    Rational v = expr();
    skip();
    if (pos_ != s_.size()) fail("unexpected '" + std::string(1, s_[pos_]) + "'");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    throw CalculatorSyntaxError("calculator: " + what + " at position " +
                                std::to_string(pos_ + 1));
  }
  // A well-formed expression that cannot be computed exactly.
  [[noreturn]] void cannot(const std::string& what) {
    throw MathError("calculator: " + what + " at position " + std::to_string(pos_ + 1));
  }
  void skip() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool eat(char c) {
    skip();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  Rational expr() {
    Rational v = term();
    for (;;) {
      if (eat('+'))
        v = v + term();
      else if (eat('-'))
        v = v - term();
      else
        return v;
    }
  }
  Rational term() {
    Rational v = unary();
    for (;;) {
      if (eat('*'))
        v = v * unary();
      else if (eat('/'))
        v = v / unary();
      else
        return v;
    }
  }
  Rational unary() {
    if (++depth_ > 200) cannot("expression nested too deeply");
    Rational v = eat('-') ? -unary() : eat('+') ? unary() : power();
    --depth_;
    return v;
  }
  Rational power() {
    Rational base = factorial();
    if (!eat('^')) return base;
    Rational e = unary();
    if (!e.is_integer()) cannot("exponent must be an integer");
    return base.pow(e.num());
  }
  Rational factorial() {
    Rational v = primary();
    while (eat('!')) {
      // 20! is the largest factorial below 2^63.
      if (!v.is_integer() || v.num() < 0) cannot("factorial of " + v.str());
      if (v.num() > 20) cannot("factorial of " + v.str() + " is too large for exact arithmetic");
      int64_t f = 1;
      for (int64_t k = 2; k <= v.num(); ++k) f *= k;
      v = Rational(f);
    }
    return v;
  }
  Rational primary() {
    skip();
    if (eat('(')) {
      if (++depth_ > 200) cannot("expression nested too deeply");
      Rational v = expr();
      --depth_;
      if (!eat(')')) fail("missing ')'");
      return v;
    }
    size_t start = pos_;
    int64_t num = 0, den = 1;
    bool any = false, dot = false;
    while (pos_ < s_.size() &&
           (std::isdigit(static_cast<unsigned char>(s_[pos_])) || (s_[pos_] == '.' && !dot))) {
      if (s_[pos_] == '.') {
        dot = true;
      } else {
        if (num > (INT64_MAX - 9) / 10 || den > INT64_MAX / 10) cannot("number too long");
        num = num * 10 + (s_[pos_] - '0');
        if (dot) den *= 10;
        any = true;
      }
      ++pos_;
    }
    if (!any) {
      pos_ = start;
      fail(pos_ < s_.size() ? "expected a number, got '" + std::string(1, s_[pos_]) + "'"
                            : "expected a number at the end");
    }
    return Rational(num, den);
  }

  std::string s_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

Rational evaluate(const std::string& expression) { return Parser(normalize(expression)).parse(); }

std::optional<Rational> try_evaluate(const std::string& expression) {
  try {
    return evaluate(expression);
  } catch (const MathError&) {
    return std::nullopt;
  }
}

}  // namespace posttrain::synthetic
