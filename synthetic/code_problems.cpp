// Built-in code families. Each family draws a parameter (base, threshold, shift...) and inputs,
// and writes `assert f(input) == expected` with the expected value from a C++ reference.
#include "synthetic/code_problems.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <sstream>

#include "common/jsonl.h"
#include "synthetic/math_problems.h"
#include "synthetic/rng.h"

namespace posttrain::synthetic {

std::string py_str(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

namespace {

std::string py_list(const std::vector<int64_t>& xs) {
  std::string s = "[";
  for (size_t i = 0; i < xs.size(); ++i) s += (i ? ", " : "") + std::to_string(xs[i]);
  return s + "]";
}
std::string py_bool(bool b) { return b ? "True" : "False"; }

std::vector<int64_t> random_list(Rng& rng, int difficulty, int64_t lo = -20, int64_t hi = 20) {
  int64_t n = rng.uniform(0, difficulty == 1 ? 5 : difficulty == 2 ? 8 : 14);
  std::vector<int64_t> xs;
  for (int64_t i = 0; i < n; ++i) xs.push_back(rng.uniform(lo, hi));
  return xs;
}

std::string random_text(Rng& rng, int difficulty, const std::string& alphabet) {
  int64_t n = rng.uniform(0, difficulty == 1 ? 8 : 20);
  std::string s;
  for (int64_t i = 0; i < n; ++i)
    s += alphabet[static_cast<size_t>(rng.uniform(0, alphabet.size() - 1))];
  return s;
}

int test_count(int difficulty) { return difficulty == 1 ? 4 : difficulty == 2 ? 6 : 8; }

using FamilyFn = void (*)(Rng&, int, CodeProblem*);

void digit_sum(Rng& rng, int d, CodeProblem* p) {
  int64_t base = d == 1 ? 10 : rng.uniform(2, 9);
  p->params = {{"base", base}};
  p->entry_point = "digit_sum";
  p->signature = "def digit_sum(n: int) -> int:";
  p->description = "Return the sum of the digits of the integer n written in base " +
                   std::to_string(base) +
                   ". For a negative n use its absolute value; the digit "
                   "sum of 0 is 0.";
  for (int t = 0; t < test_count(d); ++t) {
    int64_t n = t == 0 ? 0 : rng.uniform(-100000, d == 3 ? 1000000000 : 100000);
    int64_t m = n < 0 ? -n : n, sum = 0;
    for (; m > 0; m /= base) sum += m % base;
    p->tests.push_back("assert digit_sum(" + std::to_string(n) + ") == " + std::to_string(sum));
  }
}

void running_sum(Rng& rng, int d, CodeProblem* p) {
  p->entry_point = "running_sum";
  p->signature = "def running_sum(xs: list[int]) -> list[int]:";
  p->description = "Return the list of prefix sums of xs: element i is xs[0] + ... + xs[i].";
  for (int t = 0; t < test_count(d); ++t) {
    auto xs = random_list(rng, d);
    std::vector<int64_t> out;
    int64_t acc = 0;
    for (auto x : xs) out.push_back(acc += x);
    p->tests.push_back("assert running_sum(" + py_list(xs) + ") == " + py_list(out));
  }
}

void count_above(Rng& rng, int d, CodeProblem* p) {
  int64_t limit = rng.uniform(-5, 10);
  p->params = {{"threshold", limit}};
  p->entry_point = "count_above";
  p->signature = "def count_above(xs: list[int]) -> int:";
  p->description =
      "Return how many elements of xs are strictly greater than " + std::to_string(limit) + ".";
  for (int t = 0; t < test_count(d); ++t) {
    auto xs = random_list(rng, d);
    int64_t n = std::count_if(xs.begin(), xs.end(), [&](int64_t x) { return x > limit; });
    p->tests.push_back("assert count_above(" + py_list(xs) + ") == " + std::to_string(n));
  }
}

void reverse_words(Rng& rng, int d, CodeProblem* p) {
  p->entry_point = "reverse_words";
  p->signature = "def reverse_words(s: str) -> str:";
  p->description =
      "Return the words of s in reverse order joined by single spaces. Words are "
      "separated by one or more spaces; leading and trailing spaces are dropped.";
  for (int t = 0; t < test_count(d); ++t) {
    std::string s = random_text(rng, d, "abcde   xyz");
    std::istringstream in(s);
    std::vector<std::string> words;
    for (std::string w; in >> w;) words.push_back(w);
    std::string out;
    for (auto it = words.rbegin(); it != words.rend(); ++it) out += (out.empty() ? "" : " ") + *it;
    p->tests.push_back("assert reverse_words(" + py_str(s) + ") == " + py_str(out));
  }
}

void shift_letters(Rng& rng, int d, CodeProblem* p) {
  int64_t k = rng.uniform(1, 25);
  p->params = {{"shift", k}};
  p->entry_point = "shift_letters";
  p->signature = "def shift_letters(s: str) -> str:";
  p->description = "Shift every ASCII letter of s " + std::to_string(k) +
                   " places forward in the alphabet, wrapping from z to a and keeping upper or "
                   "lower case; leave every other character unchanged.";
  for (int t = 0; t < test_count(d); ++t) {
    std::string s = random_text(rng, d, "abcxyzABCXYZ mn!?09");
    std::string out = s;
    for (char& c : out) {
      if (c >= 'a' && c <= 'z')
        c = static_cast<char>('a' + (c - 'a' + k) % 26);
      else if (c >= 'A' && c <= 'Z')
        c = static_cast<char>('A' + (c - 'A' + k) % 26);
    }
    p->tests.push_back("assert shift_letters(" + py_str(s) + ") == " + py_str(out));
  }
}

void rotate_right(Rng& rng, int d, CodeProblem* p) {
  int64_t k = rng.uniform(1, 12);
  p->params = {{"k", k}};
  p->entry_point = "rotate_right";
  p->signature = "def rotate_right(xs: list[int]) -> list[int]:";
  p->description = "Return xs rotated " + std::to_string(k) +
                   " places to the right (the last element moves to the front each place). "
                   "The rotation may exceed the length; an empty list stays empty.";
  for (int t = 0; t < test_count(d); ++t) {
    auto xs = random_list(rng, d);
    std::vector<int64_t> out = xs;
    if (!xs.empty()) {
      int64_t n = static_cast<int64_t>(xs.size());
      for (int64_t i = 0; i < n; ++i) out[(i + k) % n] = xs[i];
    }
    p->tests.push_back("assert rotate_right(" + py_list(xs) + ") == " + py_list(out));
  }
}

void dedupe(Rng& rng, int d, CodeProblem* p) {
  p->entry_point = "dedupe";
  p->signature = "def dedupe(xs: list[int]) -> list[int]:";
  p->description =
      "Return xs without repeated values, keeping the first occurrence of each "
      "value and the original order.";
  for (int t = 0; t < test_count(d); ++t) {
    auto xs = random_list(rng, d, -4, 4);
    std::vector<int64_t> out;
    for (auto x : xs) {
      if (std::find(out.begin(), out.end(), x) == out.end()) out.push_back(x);
    }
    p->tests.push_back("assert dedupe(" + py_list(xs) + ") == " + py_list(out));
  }
}

void run_length(Rng& rng, int d, CodeProblem* p) {
  p->entry_point = "run_length";
  p->signature = "def run_length(s: str) -> str:";
  p->description =
      "Run-length encode s: each maximal run of one character becomes the "
      "character followed by the run's length, e.g. \"aaabcc\" -> \"a3b1c2\". The "
      "empty string encodes to the empty string.";
  for (int t = 0; t < test_count(d); ++t) {
    std::string s = random_text(rng, d, "aaabbbccd");
    std::string out;
    for (size_t i = 0; i < s.size();) {
      size_t j = i;
      while (j < s.size() && s[j] == s[i]) ++j;
      out += s[i] + std::to_string(j - i);
      i = j;
    }
    p->tests.push_back("assert run_length(" + py_str(s) + ") == " + py_str(out));
  }
}

void collatz_steps(Rng& rng, int d, CodeProblem* p) {
  p->entry_point = "collatz_steps";
  p->signature = "def collatz_steps(n: int) -> int:";
  p->description =
      "For a positive integer n, count the steps to reach 1 when each step maps n "
      "to n / 2 if n is even and to 3 * n + 1 if n is odd (collatz_steps(1) == 0).";
  for (int t = 0; t < test_count(d); ++t) {
    int64_t n = t == 0 ? 1 : rng.uniform(2, d == 3 ? 100000 : 1000), m = n, steps = 0;
    while (m != 1) m = (m % 2 == 0) ? m / 2 : 3 * m + 1, ++steps;
    p->tests.push_back("assert collatz_steps(" + std::to_string(n) +
                       ") == " + std::to_string(steps));
  }
}

void is_balanced(Rng& rng, int d, CodeProblem* p) {
  p->entry_point = "is_balanced";
  p->signature = "def is_balanced(s: str) -> bool:";
  p->description =
      "Return True when the brackets (), [] and {} in s are balanced and properly "
      "nested; other characters are ignored.";
  for (int t = 0; t < test_count(d); ++t) {
    std::string s = random_text(rng, d, "()[]{}()a");
    std::string stack;
    bool ok = true;
    for (char c : s) {
      if (c == '(' || c == '[' || c == '{') {
        stack += c;
      } else if (c == ')' || c == ']' || c == '}') {
        char open = c == ')' ? '(' : c == ']' ? '[' : '{';
        if (stack.empty() || stack.back() != open) {
          ok = false;
          break;
        }
        stack.pop_back();
      }
    }
    ok = ok && stack.empty();
    p->tests.push_back("assert is_balanced(" + py_str(s) + ") == " + py_bool(ok));
  }
}

const std::vector<std::pair<std::string, FamilyFn>>& families() {
  static const std::vector<std::pair<std::string, FamilyFn>> all = {
      {"digit_sum", digit_sum},
      {"running_sum", running_sum},
      {"count_above", count_above},
      {"reverse_words", reverse_words},
      {"shift_letters", shift_letters},
      {"rotate_right", rotate_right},
      {"dedupe", dedupe},
      {"run_length", run_length},
      {"collatz_steps", collatz_steps},
      {"is_balanced", is_balanced}};
  return all;
}

}  // namespace

std::vector<std::string> code_families(int difficulty) {
  switch (difficulty) {
    case 1:
      return {"digit_sum", "running_sum", "count_above", "reverse_words"};
    case 2:
      return {"shift_letters", "rotate_right", "dedupe", "run_length", "digit_sum"};
    default:
      return {"run_length", "collatz_steps", "is_balanced", "rotate_right", "digit_sum"};
  }
}

std::string CodeProblem::tests_source() const {
  std::string s;
  for (const auto& t : tests) s += t + "\n";
  return s;
}

std::string CodeProblem::prompt() const {
  return description + "\n\nWrite a Python function with this signature:\n\n```python\n" +
         signature + "\n```\n\nReply with the complete function in one ```python code block.";
}

CodeProblem make_code_problem(uint64_t seed, int64_t index, int difficulty) {
  Rng rng(seed ^ 0xC0DEull, static_cast<uint64_t>(index));
  CodeProblem p;
  p.difficulty = difficulty == 0 ? static_cast<int>(rng.uniform(1, 3)) : difficulty;
  std::string name = rng.pick(code_families(p.difficulty));
  for (const auto& [family, fn] : families()) {
    if (family == name) fn(rng, p.difficulty, &p);
  }
  p.family = name;
  return p;
}

std::vector<CodeProblem> make_code_problems(uint64_t seed, int64_t count, int difficulty) {
  std::vector<CodeProblem> out;
  std::set<std::string> seen;
  for (int64_t i = 0; static_cast<int64_t>(out.size()) < count; ++i) {
    if (i > count * 20 + 100) {
      throw UsageError("cannot draw " + std::to_string(count) + " distinct code problems");
    }
    CodeProblem p = make_code_problem(seed, i, difficulty);
    if (!seen.insert(p.prompt() + "\n" + p.tests_source()).second) continue;
    p.id = "code-" + std::to_string(seed) + "-" + std::to_string(out.size());
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<std::string> split_tests(const std::string& source) {
  std::vector<std::string> tests;
  std::istringstream in(source);
  for (std::string line; std::getline(in, line);) {
    size_t a = line.find_first_not_of(" \t\r");
    if (a == std::string::npos || line[a] == '#') continue;
    line.erase(line.find_last_not_of(" \t\r") + 1);
    tests.push_back(line);
  }
  return tests;
}

std::vector<CodeProblem> load_code_problems(const std::string& path) {
  JsonlReader reader(path);
  std::vector<CodeProblem> out;
  std::set<std::string> ids;
  nlohmann::json row;
  while (reader.next(&row)) {
    CodeProblem p;
    p.family = "jsonl";
    p.id = require_string(row, "id", reader.where());
    p.description = require_string(row, "description", reader.where());
    p.signature = require_string(row, "signature", reader.where());
    const auto& tests = require_field(row, "tests", reader.where());
    if (tests.is_string()) {
      p.tests = split_tests(tests.get<std::string>());
    } else if (tests.is_array()) {
      for (size_t i = 0; i < tests.size(); ++i) {
        if (!tests[i].is_string()) {
          throw InputError(reader.where("tests[" + std::to_string(i) + "]"), "must be a string");
        }
        p.tests.push_back(tests[i].get<std::string>());
      }
    } else {
      throw InputError(reader.where("tests"), "must be a string or a list of strings");
    }
    if (p.tests.empty()) throw InputError(reader.where("tests"), "has no tests");
    if (row.contains("entry_point"))
      p.entry_point = require_string(row, "entry_point", reader.where());
    if (row.contains("difficulty")) {
      const auto& d = row["difficulty"];
      p.difficulty = d.is_string()
                         ? parse_difficulty(d.get<std::string>())
                         : static_cast<int>(require_int(row, "difficulty", reader.where()));
    }
    if (!ids.insert(p.id).second)
      throw InputError(reader.where("id"), "duplicate id '" + p.id + "'");
    out.push_back(std::move(p));
  }
  return out;
}

nlohmann::json to_json(const CodeProblem& p) {
  return {{"id", p.id},
          {"kind", "code"},
          {"family", p.family},
          {"difficulty", difficulty_name(p.difficulty)},
          {"prompt", p.prompt()},
          {"description", p.description},
          {"signature", p.signature},
          {"entry_point", p.entry_point},
          {"tests", p.tests_source()},
          {"params", p.params}};
}

}  // namespace posttrain::synthetic
