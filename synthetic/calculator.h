// A small exact calculator: + - * / ^ (also ** and the symbols × ÷ · −), postfix factorial
// (n! for integers 0..20), parentheses, unary signs, decimal literals, over Rational. Used by the calculator tool and to check the equations
// a math solution shows. Our own recursive-descent parser; no eval of anything else.
#pragma once

#include <optional>
#include <string>

#include "synthetic/rational.h"

namespace posttrain::synthetic {

// The text is not an expression the calculator reads (the position is in the message). Other
// MathErrors mean a well-formed expression that cannot be computed exactly (overflow, division
// by zero, a non-integer exponent or factorial, a number past 18 digits, nesting past 200).
class CalculatorSyntaxError : public MathError {
 public:
  using MathError::MathError;
};

// Evaluates `expression` exactly. Throws CalculatorSyntaxError for a syntax error (with the
// position), MathError for division by zero, overflow or a non-integer exponent.
Rational evaluate(const std::string& expression);

// Like evaluate(), but nullopt instead of a syntax error (still nullopt on any MathError).
std::optional<Rational> try_evaluate(const std::string& expression);

}  // namespace posttrain::synthetic
