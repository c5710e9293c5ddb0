// Rationals, the calculator, the math checker (near misses) and the math generators.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "synthetic/calculator.h"
#include "synthetic/math_check.h"
#include "synthetic/math_problems.h"
#include "synthetic/rational.h"

namespace posttrain::synthetic {
namespace {

TEST(Rational, ReducesAndKeepsSignOnNumerator) {
  Rational r(6, -8);
  EXPECT_EQ(r.num(), -3);
  EXPECT_EQ(r.den(), 4);
  EXPECT_EQ(r.str(), "-3/4");
  EXPECT_EQ(r.decimal_or_fraction(), "-0.75");
  EXPECT_EQ(Rational(1, 3).decimal_or_fraction(), "1/3");
  EXPECT_EQ(Rational(1, 40).decimal_or_fraction(), "0.025");
  EXPECT_THROW(Rational(1, 0), MathError);
}

TEST(Rational, OverflowThrowsInsteadOfWrapping) {
  Rational big(INT64_MAX / 2 + 1);
  EXPECT_THROW(big * Rational(4), MathError);
  EXPECT_THROW(Rational(10).pow(40), MathError);
  EXPECT_EQ(Rational(2).pow(-3), Rational(1, 8));
}

TEST(ParseNumber, AcceptsTheWaysAnAnswerIsWritten) {
  EXPECT_EQ(*parse_number("0.5"), Rational(1, 2));
  EXPECT_EQ(*parse_number("1/2"), Rational(1, 2));
  EXPECT_EQ(*parse_number("\\frac{1}{2}"), Rational(1, 2));
  EXPECT_EQ(*parse_number("-\\dfrac{3}{4}"), Rational(-3, 4));
  EXPECT_EQ(*parse_number(" 1,234 "), Rational(1234));
  EXPECT_EQ(*parse_number("$12.50"), Rational(25, 2));
  EXPECT_EQ(*parse_number("12%"), Rational(3, 25));
  EXPECT_EQ(*parse_number("42."), Rational(42));
  EXPECT_EQ(*parse_number("7 \\text{ liters}"), Rational(7));
  EXPECT_FALSE(parse_number("forty-two"));
  EXPECT_FALSE(parse_number("1/0"));
  EXPECT_FALSE(parse_number("1,23"));
  EXPECT_FALSE(parse_number(""));
}

TEST(ParseNumber, NestedFractionsToABoundedDepth) {
  // 1 / (1/1) = 1; 1 / (1 / (1/2)) = 1 / 2; -(3/4) / 2 = -3/8.
  EXPECT_EQ(*parse_number("\\frac{1}{\\frac{1}{1}}"), Rational(1));
  EXPECT_EQ(*parse_number("\\frac{1}{\\frac{1}{\\dfrac{1}{2}}}"), Rational(1, 2));
  EXPECT_EQ(*parse_number("\\frac{-\\frac{3}{4}}{2}"), Rational(-3, 8));
  EXPECT_TRUE(check_math("\\boxed{\\frac{1}{\\frac{1}{1}}}", Rational(1)).passed);
  // 8 levels read (each \frac{1}{...} keeps the value 1), 9 do not; malformed ones never.
  auto nest = [](int levels) {
    std::string s;
    for (int i = 0; i < levels; ++i) s += "\\frac{1}{";
    return s + "1" + std::string(levels, '}');
  };
  EXPECT_EQ(*parse_number(nest(8)), Rational(1));
  EXPECT_FALSE(parse_number(nest(9)));
  EXPECT_FALSE(parse_number(nest(100000)));
  EXPECT_FALSE(parse_number("\\frac{1}{\\frac{1}{0}}"));
  EXPECT_FALSE(parse_number("\\frac{1}{2"));
  EXPECT_FALSE(parse_number("\\frac{1}{2}3"));
  // Long answers are read in linear time, without recursion per character.
  EXPECT_FALSE(parse_number("\\text{" + std::string(1 << 20, 'a') + "}1" + std::string(1 << 20, '1')));
}

TEST(Calculator, EvaluatesExactlyWithPrecedence) {
  EXPECT_EQ(evaluate("2 + 3 * 4"), Rational(14));
  EXPECT_EQ(evaluate("(2 + 3) * 4"), Rational(20));
  EXPECT_EQ(evaluate("1/3 + 1/6"), Rational(1, 2));
  EXPECT_EQ(evaluate("-2^2"), Rational(-4));
  EXPECT_EQ(evaluate("2^3^2"), Rational(512));  // right-associative
  EXPECT_EQ(evaluate("2 ** 10"), Rational(1024));
  EXPECT_EQ(evaluate("0.1 + 0.2"), Rational(3, 10));
  EXPECT_EQ(evaluate("6 \xC3\x97 7 \xC3\xB7 3"), Rational(14));  // × ÷
  EXPECT_EQ(evaluate("10 \xE2\x88\x92 4"), Rational(6));         // Unicode minus
  EXPECT_EQ(evaluate("7!"), Rational(5040));                    // 7 * 6 * ... * 1
  EXPECT_EQ(evaluate("0! + 3!^2"), Rational(37));               // 1 + 6^2
  EXPECT_EQ(evaluate("20!"), Rational(2432902008176640000));    // largest below 2^63
}

TEST(Calculator, SyntaxErrorsAreTellableFromUncomputableArithmetic) {
  EXPECT_THROW(evaluate("(1 + 2"), CalculatorSyntaxError);
  EXPECT_THROW(evaluate("x + 1"), CalculatorSyntaxError);
  for (const char* uncomputable :
       {"21!", "(1/2)!", "2^(2^(2^(2^64)))", "2^0.5", "1/0", "1234567890123456789012 + 1"}) {
    try {
      evaluate(uncomputable);
      ADD_FAILURE() << uncomputable;
    } catch (const CalculatorSyntaxError& e) {
      ADD_FAILURE() << uncomputable << " read as a syntax error: " << e.what();
    } catch (const MathError&) {
    }
  }
}

TEST(Calculator, RejectsBadInputWithAPosition) {
  EXPECT_THROW(evaluate("1 / (2 - 2)"), MathError);
  EXPECT_THROW(evaluate("2 ^ 0.5"), MathError);
  EXPECT_THROW(evaluate("import os"), MathError);
  EXPECT_THROW(evaluate("(1 + 2"), MathError);
  try {
    evaluate("1 + * 2");
    FAIL();
  } catch (const MathError& e) {
    EXPECT_NE(std::string(e.what()).find("position 5"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(try_evaluate("x + 1"));
}

TEST(ExtractAnswer, BoxedThenAnswerLine) {
  EXPECT_EQ(*extract_final_answer("so \\boxed{\\frac{1}{2}} done"), "\\frac{1}{2}");
  EXPECT_EQ(*extract_final_answer("first \\boxed{3}, then \\boxed{4}"), "4");
  EXPECT_EQ(*extract_final_answer("work\nAnswer: 42\n\n"), "42");
  EXPECT_EQ(*extract_final_answer("work\n**Answer:** 42"), "42");
  EXPECT_EQ(*extract_final_answer("final answer: 7/2"), "7/2");
  EXPECT_FALSE(extract_final_answer("Answer: 42\nbut maybe 43"));
  EXPECT_FALSE(extract_final_answer("the answer is 42"));
}

TEST(CheckMath, NearMisses) {
  EXPECT_TRUE(check_math("Answer: 42", Rational(42)).passed);
  MathCheck off_by_one = check_math("Answer: 41", Rational(42));
  EXPECT_FALSE(off_by_one.passed);
  EXPECT_EQ(off_by_one.verdict, "fail");
  EXPECT_EQ(off_by_one.given, "41");
  EXPECT_NE(off_by_one.feedback.find("41 is incorrect"), std::string::npos);
  EXPECT_EQ(off_by_one.feedback.find("42"), std::string::npos) << "feedback must not leak";
  EXPECT_TRUE(check_math("\\boxed{0.5}", Rational(1, 2)).passed);
  EXPECT_TRUE(check_math("Answer: 1/2", Rational(1, 2)).passed);
  EXPECT_TRUE(check_math("\\boxed{\\frac{2}{4}}", Rational(1, 2)).passed);
  EXPECT_FALSE(check_math("Answer: 0.49", Rational(1, 2)).passed);
  EXPECT_FALSE(check_math("Answer: -42", Rational(42)).passed);
  EXPECT_FALSE(check_math("I think it is 42.", Rational(42)).passed);
  EXPECT_FALSE(check_math("Answer: about forty", Rational(40)).passed);
}

TEST(CheckSteps, FindsTheWrongEquation) {
  std::string response =
      "First 4 * 3 = 12 dollars.\n"
      "Then 12 + 5 = 18.\n"
      "Answer: 17";
  MathCheck c = check_math(response, Rational(17));
  EXPECT_TRUE(c.answer_correct);
  EXPECT_FALSE(c.passed);
  EXPECT_EQ(c.steps_checked, 2);
  ASSERT_EQ(c.wrong_steps.size(), 1u);
  EXPECT_EQ(c.wrong_steps[0].line, 2);
  EXPECT_EQ(c.wrong_steps[0].text, "12 + 5 = 18");
  EXPECT_EQ(c.wrong_steps[0].computed, "17");
  EXPECT_TRUE(check_math(response, Rational(17), /*check_steps_too=*/false).passed);
}

TEST(CheckSteps, ChainsMoneyAndThingsThatAreNotArithmetic) {
  MathCheck c;
  check_steps(
      "Total: $2.50 * 4 = $10 = 5 * 2\n"
      "Let x - 3 = 5, so x = 8.\n"  // algebra, not arithmetic: skipped
      "20% of 50 = 10\n"            // skipped (not a bare expression)
      "if a == b: pass\n"           // code: skipped
      "1/3 = 0.33\n",               // exact check: wrong
      &c);
  EXPECT_EQ(c.steps_checked, 3);
  ASSERT_EQ(c.wrong_steps.size(), 1u);
  EXPECT_EQ(c.wrong_steps[0].line, 5);
}

TEST(CheckSteps, StepsThatCannotBeCheckedFailTheAnswer) {
  // Both passed before with steps_checked 0: '!' was not read, and 2^64 overflowed silently.
  MathCheck f = check_math("7! = 5\nAnswer: 5", Rational(5));
  EXPECT_FALSE(f.passed);
  EXPECT_EQ(f.steps_checked, 1);
  ASSERT_EQ(f.wrong_steps.size(), 1u);
  EXPECT_EQ(f.wrong_steps[0].text, "7! = 5");
  EXPECT_EQ(f.wrong_steps[0].computed, "5040");
  MathCheck p = check_math("2^(2^(2^(2^64))) = 5\nAnswer: 5", Rational(5));
  EXPECT_FALSE(p.passed);
  EXPECT_TRUE(p.answer_correct);
  ASSERT_EQ(p.unchecked_steps.size(), 1u);
  EXPECT_EQ(p.unchecked_steps[0].line, 1);
  EXPECT_NE(p.feedback.find("Line 1: \"2^(2^(2^(2^64))) = 5\" cannot be checked"),
            std::string::npos)
      << p.feedback;
  EXPECT_EQ(p.details()["unchecked_steps"][0]["step"], "2^(2^(2^(2^64))) = 5");
  EXPECT_FALSE(check_math("25! = 1\nAnswer: 1", Rational(1)).passed);
  // Without step checking only the answer counts.
  EXPECT_TRUE(check_math("7! = 5\nAnswer: 5", Rational(5), /*check_steps_too=*/false).passed);
  // Exclamations and text that is not arithmetic are still not steps.
  MathCheck ok = check_math("Good! 3 + 4 = 7!\n(see 3 = 4\nAnswer: 7", Rational(7));
  EXPECT_TRUE(ok.passed) << ok.feedback;
  EXPECT_EQ(ok.steps_checked, 1);
}

TEST(CheckMath, LongLinesDoNotCrash) {
  // A 1 MB line (std::regex recursed per character here and overflowed the stack).
  const std::string digits(1 << 20, '1'), spaces(1 << 20, ' ');
  EXPECT_FALSE(check_math("Answer: " + digits, Rational(1)).passed);
  EXPECT_TRUE(check_math("x" + spaces + "\nAnswer: **1**" + spaces, Rational(1)).passed);
  MathCheck c = check_math("1,000,000 = 10^6\n" + digits + " + 1 = 1\nAnswer: 1", Rational(1));
  EXPECT_EQ(c.steps_checked, 1);  // a 1,048,576-digit number is past exact arithmetic...
  EXPECT_FALSE(c.passed);         // ... but well-formed, so it is an unchecked step
  ASSERT_EQ(c.unchecked_steps.size(), 1u);
  EXPECT_EQ(c.unchecked_steps[0].line, 2);
}

TEST(MathProblems, DeterministicBySeedAndVariedAcrossSeeds) {
  auto a = make_math_problems(7, 20, 0), b = make_math_problems(7, 20, 0);
  auto c = make_math_problems(8, 20, 0);
  ASSERT_EQ(a.size(), 20u);
  int same_as_other_seed = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(to_json(a[i]).dump(), to_json(b[i]).dump());
    same_as_other_seed += a[i].prompt == c[i].prompt;
  }
  EXPECT_LT(same_as_other_seed, 3);
  // A longer run starts with the same problems (ids line up with candidates files).
  auto longer = make_math_problems(7, 30, 0);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].prompt, longer[i].prompt);
}

TEST(MathProblems, ReferenceSolutionsPassTheCheckerWithEveryStepVerified) {
  // The generator computes answers with Rational operations; the solution writes them as
  // equations that the step checker re-evaluates from their text with the calculator.
  std::set<std::string> families;
  for (int level = 1; level <= 3; ++level) {
    for (const auto& p : make_math_problems(100 + level, 40, level)) {
      MathCheck c = check_math(p.solution, p.answer);
      EXPECT_TRUE(c.passed) << p.prompt << "\n" << p.solution << c.feedback;
      EXPECT_GE(c.steps_checked, 1) << p.solution;
      EXPECT_EQ(p.difficulty, level);
      families.insert(p.family);
    }
  }
  EXPECT_EQ(families.size(), 5u);
}

TEST(MathProblems, ArithmeticPromptEvaluatesToTheAnswer) {
  int seen = 0;
  for (const auto& p : make_math_problems(3, 60, 0)) {
    if (p.family != "arithmetic") continue;
    const std::string head = "Compute the exact value of ";
    ASSERT_EQ(p.prompt.rfind(head, 0), 0u);
    std::string expr = p.prompt.substr(head.size(), p.prompt.find(".\n") - head.size());
    EXPECT_EQ(evaluate(expr), p.answer) << expr;
    ++seen;
  }
  EXPECT_GT(seen, 3);
}

TEST(MathProblems, HandCheckedWordProblem) {
  // Hand-derived: 3 notebooks at $4 and 2 pens at $1 cost 12 + 2 = 14; change from 20 is 6.
  std::string solution = "3 * 4 = 12\n2 * 1 = 2\n12 + 2 = 14\n20 - 14 = 6\nAnswer: 6\n";
  EXPECT_TRUE(check_math(solution, Rational(6)).passed);
  EXPECT_FALSE(
      check_math("3 * 4 = 12\n2 * 1 = 2\n12 + 2 = 14\n20 - 14 = 7\nAnswer: 7\n", Rational(6))
          .passed);
}

}  // namespace
}  // namespace posttrain::synthetic
