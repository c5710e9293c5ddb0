// Tool families. Facts are the ones written in builtin_documents(); answers are computed here
// exactly (Rational, or integer loops for the python family).
#include "synthetic/tool_problems.h"

#include <set>

#include "common/error.h"
#include "synthetic/math_problems.h"
#include "synthetic/rational.h"
#include "synthetic/rng.h"
#include "synthetic/tools.h"

namespace posttrain::synthetic {

namespace {

struct Fact {
  const char* question;  // "How many books does the Aurora Library hold?"
  const char* subject;   // "books held by the Aurora Library"
  int64_t value;
};

// Each value is written in builtin_documents() (tests check that lookup finds it).
const std::vector<Fact>& facts() {
  static const std::vector<Fact> f = {
      {"How many books does the Aurora Library hold?", "books in the Aurora Library", 48213},
      {"How many books does the Brindle Archive hold?", "books in the Brindle Archive", 17950},
      {"How many historical maps does the Aurora Library hold?", "maps in the Aurora Library", 312},
      {"How many historical maps does the Brindle Archive hold?", "maps in the Brindle Archive",
       1204},
      {"How many seats does the reading room of the Aurora Library have?",
       "reading-room seats of the Aurora Library", 96},
      {"How many seats does the reading room of the Brindle Archive have?",
       "reading-room seats of the Brindle Archive", 40},
      {"How tall, in meters, is the Port Calder Lighthouse?",
       "height of the Port Calder "
       "Lighthouse in meters",
       37},
      {"How many steps does the Port Calder Lighthouse have?",
       "steps of the Port Calder "
       "Lighthouse",
       214},
      {"How long, in kilometers, is the Tessaly River?", "length of the Tessaly River in km", 412},
      {"At what altitude, in meters, does the Kestrel Ridge Observatory stand?",
       "altitude of the Kestrel Ridge Observatory in meters", 2315},
      {"How many times a day does the Harlow Ferry cross the Tessaly River?",
       "daily crossings of the Harlow Ferry", 18},
      {"How many passengers can the Harlow Ferry carry?",
       "passenger capacity of the Harlow "
       "Ferry",
       140},
      {"In what year was the Aurora Library founded?", "founding year of the Aurora Library", 1874},
      {"In what year was the Kestrel Ridge Observatory founded?",
       "founding year of the Kestrel "
       "Ridge Observatory",
       1958},
  };
  return f;
}

struct NameFact {
  const char* question;
  const char* answer;
};
const std::vector<NameFact> kNameFacts = {
    {"Who founded the Aurora Library?", "Mira Santos"},
    {"Who founded the Brindle Archive?", "Tobias Wren"},
    {"Who founded the Kestrel Ridge Observatory?", "Hana Okafor"},
    {"In which town is the Aurora Library?", "Veldt"},
};

void calc(Rng& rng, int d, ToolProblem* p) {
  int64_t hi = d == 1 ? 9999 : d == 2 ? 99999 : 999999;
  int64_t a = rng.uniform(1000, hi), b = rng.uniform(100, hi), c = rng.uniform(10, hi);
  Rational value;
  std::string expr;
  if (d == 1) {
    expr = std::to_string(a) + " * " + std::to_string(b) + " - " + std::to_string(c);
    value = Rational(a) * Rational(b) - Rational(c);
  } else if (d == 2) {
    int64_t e = rng.uniform(2, 64);
    expr = "(" + std::to_string(a) + " + " + std::to_string(b) + ") * " + std::to_string(c) +
           " / " + std::to_string(e);
    value = (Rational(a) + Rational(b)) * Rational(c) / Rational(e);
  } else {
    int64_t e = rng.uniform(2, 3);  // keeps numerator * denominator inside 64 bits
    expr = std::to_string(a) + " / " + std::to_string(b) + " + " + std::to_string(c % 1000) + "^" +
           std::to_string(e);
    value = Rational(a) / Rational(b) + Rational(c % 1000).pow(e);
  }
  p->tools = {"calculator"};
  p->prompt = "What is the exact value of " + expr + "? Use the calculator.";
  p->answer = value.decimal_or_fraction();
  p->reference_solution = "<|python_tag|>calculator.call(expression=\"" + expr +
                          "\")<|eom_id|>Answer: " + p->answer.get<std::string>();
}

void lookup(Rng& rng, int d, ToolProblem* p) {
  p->tools = {"lookup"};
  if (rng.uniform(0, 3) == 0) {
    const auto& f = rng.pick(kNameFacts);
    p->prompt = std::string(f.question) + " Look it up in the reference documents.";
    p->answer = f.answer;
    return;
  }
  const auto& f = rng.pick(facts());
  p->prompt = std::string(f.question) + " Look it up in the reference documents.";
  p->answer = std::to_string(f.value);
}

void lookup_calc(Rng& rng, int d, ToolProblem* p) {
  const auto& all = facts();
  const Fact& a = rng.pick(all);
  const Fact* b = &rng.pick(all);
  while (b == &a) b = &rng.pick(all);
  int64_t op = rng.uniform(0, d == 1 ? 1 : 2);
  Rational va(a.value), vb(b->value), value;
  std::string what;
  if (op == 0) {
    value = va + vb;
    what = "the sum of the " + std::string(a.subject) + " and the " + b->subject;
  } else if (op == 1) {
    value = va - vb;
    what = "the " + std::string(a.subject) + " minus the " + b->subject;
  } else {
    value = va * vb;
    what = "the product of the " + std::string(a.subject) + " and the " + b->subject;
  }
  p->tools = {"lookup", "calculator"};
  p->prompt = "Using the reference documents, find " + what + ".";
  p->answer = value.decimal_or_fraction();
}

void python_task(Rng& rng, int d, ToolProblem* p) {
  int64_t kind = rng.uniform(0, 2);
  int64_t n = rng.uniform(d == 1 ? 50 : d == 2 ? 500 : 5000, d == 1 ? 200 : d == 2 ? 2000 : 20000);
  p->tools = {"python"};
  if (kind == 0) {
    std::vector<bool> composite(static_cast<size_t>(n), false);
    int64_t sum = 0;
    for (int64_t i = 2; i < n; ++i) {
      if (composite[i]) continue;
      sum += i;
      for (int64_t j = i * i; j < n; j += i) composite[j] = true;
    }
    p->prompt = "Write and run Python to compute the sum of all prime numbers below " +
                std::to_string(n) + ".";
    p->answer = std::to_string(sum);
  } else if (kind == 1) {
    int64_t a = rng.uniform(3, 9), b = rng.uniform(10, 17), count = 0;
    for (int64_t i = 1; i <= n; ++i) count += (i % a == 0 || i % b == 0);
    p->prompt = "Write and run Python to count the integers from 1 to " + std::to_string(n) +
                " that are divisible by " + std::to_string(a) + " or by " + std::to_string(b) + ".";
    p->answer = std::to_string(count);
  } else {
    int64_t m = rng.uniform(1000, 9999), x = 0, y = 1;  // F(0)=0, F(1)=1
    for (int64_t i = 0; i < n; ++i) {
      int64_t t = (x + y) % m;
      x = y;
      y = t;
    }
    p->prompt = "Write and run Python to compute the " + std::to_string(n) +
                "-th Fibonacci number modulo " + std::to_string(m) +
                " (with F(0) = 0 and F(1) = 1).";
    p->answer = std::to_string(x);
  }
}

using Family = void (*)(Rng&, int, ToolProblem*);
const std::vector<std::pair<std::string, Family>>& family_table() {
  static const std::vector<std::pair<std::string, Family>> families = {
      {"calc", calc}, {"lookup", lookup}, {"lookup_calc", lookup_calc}, {"python", python_task}};
  return families;
}

}  // namespace

const std::vector<std::string>& tool_family_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& entry : family_table()) out.push_back(entry.first);
    return out;
  }();
  return names;
}

ToolProblem make_tool_problem(uint64_t seed, int64_t index, int difficulty,
                              const DrawFilter& filter) {
  Rng rng(seed ^ 0x7001ull, static_cast<uint64_t>(index));
  ToolProblem p;
  p.difficulty = difficulty == 0 ? static_cast<int>(rng.uniform(1, 3)) : difficulty;
  const auto allowed = select_families(family_table(), filter.families, "tool");
  const auto& f = rng.pick(allowed);
  p.family = f.first;
  f.second(rng, p.difficulty, &p);
  p.system = tool_system_prompt(p.tools);
  return p;
}

std::vector<ToolProblem> make_tool_problems(uint64_t seed, int64_t count, int difficulty,
                                            const DrawFilter& filter) {
  std::vector<ToolProblem> out;
  std::set<std::string> seen;
  for (int64_t i = 0; static_cast<int64_t>(out.size()) < count; ++i) {
    if (i > count * 20 + 100) {
      throw UsageError("cannot draw " + std::to_string(count) +
                       " distinct tool problems; lower --count");
    }
    ToolProblem p = make_tool_problem(seed, i, difficulty, filter);
    if (!in_split(filter.split, p.prompt)) continue;
    if (!seen.insert(p.prompt).second) continue;
    p.id = "tool-" + std::to_string(seed) + "-" + std::to_string(out.size());
    out.push_back(std::move(p));
  }
  return out;
}

nlohmann::json to_json(const ToolProblem& p) {
  nlohmann::json j = {{"id", p.id},         {"kind", "tool"},
          {"family", p.family}, {"difficulty", difficulty_name(p.difficulty)},
          {"system", p.system}, {"prompt", p.prompt},
          {"tools", p.tools},   {"answer", p.answer}};
  if (!p.reference_solution.empty()) j["reference_solution"] = p.reference_solution;
  return j;
}

}  // namespace posttrain::synthetic
