// Math families. Every answer is computed with Rational arithmetic from the drawn parameters;
// the reference solution writes the same computation as "expr = value" lines.
#include "synthetic/math_problems.h"

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "synthetic/calculator.h"
#include "synthetic/rng.h"

namespace posttrain::synthetic {

const char kMathAnswerInstruction[] =
    "Show your steps, then give the exact final answer (an integer, a decimal or a reduced "
    "fraction) as \\boxed{...} or on a last line \"Answer: ...\".";

int parse_difficulty(const std::string& text) {
  if (text == "mixed" || text == "0") return 0;
  if (text == "easy" || text == "1") return 1;
  if (text == "medium" || text == "2") return 2;
  if (text == "hard" || text == "3") return 3;
  throw UsageError("--difficulty must be easy, medium, hard or mixed (got '" + text + "')");
}

std::string difficulty_name(int level) {
  static const char* names[] = {"mixed", "easy", "medium", "hard"};
  return level >= 0 && level <= 3 ? names[level] : "unknown";
}

namespace {

// A value as it appears inside a step: negatives and fractions in parentheses.
std::string operand(const Rational& v) {
  std::string s = v.decimal_or_fraction();
  return (v.is_integer() && v.num() >= 0) ? s : "(" + s + ")";
}

// Money with two decimals when it has cents: 12 -> "12", 2.5 -> "2.50".
std::string money(const Rational& v) {
  if (v.is_integer()) return v.str();
  std::string s = v.decimal_or_fraction();
  size_t dot = s.find('.');
  if (dot != std::string::npos && s.size() - dot == 2) s += "0";
  return s;
}

struct Steps {
  std::string text;
  Rational add(const std::string& lhs, const Rational& value) {
    text += lhs + " = " + value.decimal_or_fraction() + "\n";
    return value;
  }
};

// ---- arithmetic: a random expression tree ----
struct Node {
  char op = 0;  // 0 = leaf
  Rational value;
  std::unique_ptr<Node> left, right;
};

std::unique_ptr<Node> random_tree(Rng& rng, int ops, int difficulty) {
  auto node = std::make_unique<Node>();
  if (ops == 0) {
    int64_t hi = difficulty == 1 ? 20 : difficulty == 2 ? 50 : 99;
    node->value = Rational(rng.uniform(difficulty == 1 ? 1 : 2, hi));
    return node;
  }
  static const std::vector<char> easy_ops = {'+', '-', '*'};
  static const std::vector<char> all_ops = {'+', '-', '*', '/'};
  node->op = rng.pick(difficulty == 1 ? easy_ops : all_ops);
  int left_ops = static_cast<int>(rng.uniform(0, ops - 1));
  node->left = random_tree(rng, left_ops, difficulty);
  node->right = random_tree(rng, ops - 1 - left_ops, difficulty);
  return node;
}

std::string render(const Node& n, bool top) {
  if (!n.op) return n.value.str();
  std::string s = render(*n.left, false) + " " + n.op + " " + render(*n.right, false);
  return top ? s : "(" + s + ")";
}

// Evaluates bottom-up, writing one step per operation.
Rational solve(const Node& n, Steps* steps) {
  if (!n.op) return n.value;
  Rational a = solve(*n.left, steps), b = solve(*n.right, steps);
  Rational v = n.op == '+' ? a + b : n.op == '-' ? a - b : n.op == '*' ? a * b : a / b;
  return steps->add(operand(a) + " " + n.op + " " + operand(b), v);
}

bool small_enough(const Rational& v) {
  return v.num() < 1000000000 && v.num() > -1000000000 && v.den() <= 10000;
}

void arithmetic(Rng& rng, int difficulty, MathProblem* p) {
  int ops = difficulty == 1 ? 2 : difficulty == 2 ? 4 : 6;
  for (int tries = 0;; ++tries) {
    auto tree = random_tree(rng, ops, difficulty);
    Steps steps;
    try {
      Rational value = solve(*tree, &steps);
      if (!small_enough(value) && tries < 100) continue;
      std::string expr = render(*tree, true);
      p->prompt = "Compute the exact value of " + expr + ".";
      p->answer = value;
      p->solution = steps.text;
      return;
    } catch (const MathError&) {
      if (tries >= 100) throw;
    }
  }
}

// ---- addition: one sum or difference of two numbers (opt-in: `--family addition`) ----
// Small enough for a tiny model to learn from scratch in minutes (recipes/tiny_math.json):
// easy a + b with two-digit numbers, medium three-digit sums and differences, hard four-digit.
void addition(Rng& rng, int difficulty, MathProblem* p) {
  const int64_t lo = difficulty == 1 ? 10 : difficulty == 2 ? 100 : 1000;
  const int64_t a = rng.uniform(lo, lo * 10 - 1), b = rng.uniform(lo, lo * 10 - 1);
  const bool minus = difficulty > 1 && rng.uniform(0, 1) == 1;
  const Rational value = minus ? Rational(a) - Rational(b) : Rational(a) + Rational(b);
  const std::string expr = std::to_string(a) + (minus ? " - " : " + ") + std::to_string(b);
  p->prompt = "What is " + expr + "?";
  p->answer = value;
  p->solution = expr + " = " + value.decimal_or_fraction() + "\n";
}

// ---- word problems ----
const std::vector<std::string> kNames = {"Maya",  "Tomas", "Aiko", "Lena", "Omar", "Priya",
                                         "Jonas", "Zara",  "Ravi", "Elif", "Noah", "Ines"};
const std::vector<std::string> kItems = {"notebooks", "pens",      "apples",
                                         "candles",   "stamps",    "mugs",
                                         "batteries", "postcards", "bread rolls"};

Rational price(Rng& rng, int difficulty) {
  if (difficulty == 1) return Rational(rng.uniform(1, 9));
  if (difficulty == 2) return Rational(rng.uniform(2, 40) * 25, 100);  // quarters
  return Rational(rng.uniform(101, 1999), 100);                        // any cents
}

void shopping(Rng& rng, int difficulty, MathProblem* p) {
  std::string name = rng.pick(kNames);
  int n_items = difficulty == 3 ? 3 : 2;
  std::vector<std::string> items;
  while (static_cast<int>(items.size()) < n_items) {
    std::string it = rng.pick(kItems);
    if (std::find(items.begin(), items.end(), it) == items.end()) items.push_back(it);
  }
  Steps steps;
  Rational total(0);
  std::string buys, sum_lhs;
  for (int i = 0; i < n_items; ++i) {
    int64_t qty = rng.uniform(2, difficulty == 1 ? 5 : 12);
    Rational each = price(rng, difficulty);
    buys += (i == 0             ? ""
             : i == n_items - 1 ? " and "
                                : ", ") +
            std::to_string(qty) + " " + items[i] + " at $" + money(each) + " each";
    Rational cost = steps.add(std::to_string(qty) + " * " + operand(each), each * Rational(qty));
    sum_lhs += (i ? " + " : "") + operand(cost);
    total = total + cost;
  }
  steps.add(sum_lhs, total);
  int64_t bill = 10;
  while (Rational(bill) < total) bill = bill < 20 ? 20 : bill < 50 ? 50 : bill + 50;
  Rational change =
      steps.add(std::to_string(bill) + " - " + operand(total), Rational(bill) - total);
  p->prompt = name + " buys " + buys + ". " + name + " pays with a $" + std::to_string(bill) +
              " bill. How much change, in dollars, does " + name + " get back?";
  p->answer = change;
  p->solution = steps.text;
}

void sharing(Rng& rng, int difficulty, MathProblem* p) {
  int64_t jugs = rng.uniform(2, difficulty == 1 ? 6 : 12);
  int64_t liters = rng.uniform(2, difficulty == 1 ? 5 : 9);
  int64_t total = jugs * liters;
  int64_t spilled = rng.uniform(0, total / 3);
  int64_t bottles = rng.uniform(2, difficulty == 1 ? 6 : 16);
  if (difficulty < 3) {  // make it divide evenly below "hard"
    int64_t rest = total - spilled;
    spilled += rest % bottles;
  }
  std::string cafe =
      rng.pick(std::vector<std::string>{"A cafe", "A school kitchen", "A juice stand", "A hotel"});
  Steps steps;
  Rational t = steps.add(std::to_string(jugs) + " * " + std::to_string(liters), Rational(total));
  Rational rest = steps.add(operand(t) + " - " + std::to_string(spilled), t - Rational(spilled));
  Rational each =
      steps.add(operand(rest) + " / " + std::to_string(bottles), rest / Rational(bottles));
  p->prompt = cafe + " makes " + std::to_string(jugs) + " jugs of juice with " +
              std::to_string(liters) + " liters in each jug. " + std::to_string(spilled) +
              " liters are spilled, and the rest is shared equally among " +
              std::to_string(bottles) + " bottles. How many liters go into each bottle?";
  p->answer = each;
  p->solution = steps.text;
}

void speed(Rng& rng, int difficulty, MathProblem* p) {
  auto hours = [&]() {
    return difficulty == 3 ? Rational(rng.uniform(1, 8), 2) : Rational(rng.uniform(1, 4));
  };
  int64_t v1 = rng.uniform(4, 12) * 10, v2 = rng.uniform(4, 12) * 10;
  Rational t1 = hours(), t2 = difficulty == 1 ? t1 : hours();
  std::string vehicle = rng.pick(std::vector<std::string>{"train", "bus", "ferry", "truck"});
  Steps steps;
  Rational d1 = steps.add(std::to_string(v1) + " * " + operand(t1), t1 * Rational(v1));
  Rational d2 = steps.add(std::to_string(v2) + " * " + operand(t2), t2 * Rational(v2));
  Rational d = steps.add(operand(d1) + " + " + operand(d2), d1 + d2);
  Rational t = steps.add(operand(t1) + " + " + operand(t2), t1 + t2);
  Rational avg = steps.add(operand(d) + " / " + operand(t), d / t);
  p->prompt = "A " + vehicle + " travels at " + std::to_string(v1) + " km/h for " +
              t1.decimal_or_fraction() + " hours, then at " + std::to_string(v2) + " km/h for " +
              t2.decimal_or_fraction() +
              " hours. What is its average speed over the whole trip, in km/h?";
  p->answer = avg;
  p->solution = steps.text;
}

void discount(Rng& rng, int difficulty, MathProblem* p) {
  Rational base =
      difficulty == 1 ? Rational(rng.uniform(2, 30) * 10) : Rational(rng.uniform(1000, 25000), 100);
  int64_t off = rng.uniform(1, difficulty == 1 ? 5 : 15) * 5;
  int64_t tax = difficulty == 1 ? 0 : rng.uniform(1, 25);
  std::string thing =
      rng.pick(std::vector<std::string>{"jacket", "lamp", "bicycle helmet", "backpack", "kettle"});
  Steps steps;
  Rational cut = steps.add(operand(base) + " * " + std::to_string(off) + " / 100",
                           base * Rational(off) / Rational(100));
  Rational sale = steps.add(operand(base) + " - " + operand(cut), base - cut);
  Rational final_price = sale;
  std::string prompt = "A " + thing + " costs $" + money(base) + ". It is discounted by " +
                       std::to_string(off) + "%";
  if (tax) {
    Rational t = steps.add(operand(sale) + " * " + std::to_string(tax) + " / 100",
                           sale * Rational(tax) / Rational(100));
    final_price = steps.add(operand(sale) + " + " + operand(t), sale + t);
    prompt +=
        ", and then a " + std::to_string(tax) + "% sales tax is added to the discounted price";
  }
  p->prompt = prompt + ". What is the final price in dollars?";
  p->answer = final_price;
  p->solution = steps.text;
}

using Family = void (*)(Rng&, int, MathProblem*);
// The families a run draws from when --family names none (the same draws as before the
// opt-in families existed, so old seeds give the same problems).
const std::vector<std::pair<std::string, Family>>& default_families() {
  static const std::vector<std::pair<std::string, Family>> families = {{"arithmetic", arithmetic},
                                                                       {"shopping", shopping},
                                                                       {"sharing", sharing},
                                                                       {"speed", speed},
                                                                       {"discount", discount}};
  return families;
}

// Every family: the defaults, then the opt-in ones.
const std::vector<std::pair<std::string, Family>>& family_table() {
  static const std::vector<std::pair<std::string, Family>> families = [] {
    auto all = default_families();
    all.emplace_back("addition", addition);
    return all;
  }();
  return families;
}

}  // namespace

const std::vector<std::string>& math_family_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& entry : family_table()) out.push_back(entry.first);
    return out;
  }();
  return names;
}

MathProblem make_math_problem(uint64_t seed, int64_t index, int difficulty,
                              const DrawFilter& filter) {
  Rng rng(seed, static_cast<uint64_t>(index));
  MathProblem p;
  p.difficulty = difficulty == 0 ? static_cast<int>(rng.uniform(1, 3)) : difficulty;
  const auto allowed =
      filter.families.empty() ? default_families()
                             : select_families(family_table(), filter.families, "math");
  const auto& family = rng.pick(allowed);
  p.family = family.first;
  family.second(rng, p.difficulty, &p);
  if (p.family == "addition") {
    // The short form: at a few dozen tokens per problem a tiny model sees many problems per
    // packed row (recipes/tiny_math.json); the checker reads the same last line.
    p.prompt += " End with a last line \"Answer: ...\".";
  } else {
    p.prompt += "\n\n";
    p.prompt += kMathAnswerInstruction;
  }
  p.solution += "Answer: " + p.answer.decimal_or_fraction() + "\n";
  return p;
}

std::vector<MathProblem> make_math_problems(uint64_t seed, int64_t count, int difficulty,
                                            const DrawFilter& filter) {
  std::vector<MathProblem> out;
  std::set<std::string> seen;
  for (int64_t i = 0; static_cast<int64_t>(out.size()) < count; ++i) {
    if (i > count * 20 + 100) {
      throw UsageError("cannot draw " + std::to_string(count) + " distinct math problems at " +
                       "this difficulty; lower --count");
    }
    MathProblem p = make_math_problem(seed, i, difficulty, filter);
    if (!in_split(filter.split, p.prompt)) continue;
    if (!seen.insert(p.prompt).second) continue;
    p.id = "math-" + std::to_string(seed) + "-" + std::to_string(out.size());
    out.push_back(std::move(p));
  }
  return out;
}

nlohmann::json to_json(const MathProblem& p) {
  return {{"id", p.id},
          {"kind", "math"},
          {"family", p.family},
          {"difficulty", difficulty_name(p.difficulty)},
          {"prompt", p.prompt},
          {"answer", p.answer.decimal_or_fraction()},
          {"reference_solution", p.solution}};
}

}  // namespace posttrain::synthetic
