// A small exact calculator: + - * / ^ (also ** and the symbols × ÷ · −), parentheses, unary
// signs, decimal literals, over Rational. Used by the calculator tool and to check the equations
// a math solution shows. Our own recursive-descent parser; no eval of anything else.
#pragma once

#include <optional>
#include <string>

#include "synthetic/rational.h"

namespace posttrain::synthetic {

// Evaluates `expression` exactly. Throws MathError for a syntax error (with the position),
// division by zero, overflow or a non-integer exponent.
Rational evaluate(const std::string& expression);

// Like evaluate(), but nullopt instead of a syntax error (still nullopt on any MathError).
std::optional<Rational> try_evaluate(const std::string& expression);

}  // namespace posttrain::synthetic
