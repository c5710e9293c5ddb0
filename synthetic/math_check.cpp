// Final-answer extraction, exact comparison, and step checking of "lhs = rhs" chains.
#include "synthetic/math_check.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "synthetic/calculator.h"

namespace posttrain::synthetic {

namespace {

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

// Characters an arithmetic expression is made of (besides the UTF-8 operator symbols).
bool expr_char(char c) {
  return std::isdigit(static_cast<unsigned char>(c)) || c == ' ' || c == '.' || c == '+' ||
         c == '-' || c == '*' || c == '/' || c == '^' || c == '!' || c == '(' || c == ')' ||
         c == '$';
}

bool is_utf8_op(const std::string& s, size_t i) {
  return s.compare(i, 2, "\xC3\x97") == 0 || s.compare(i, 2, "\xC3\xB7") == 0 ||
         s.compare(i, 2, "\xC2\xB7") == 0;
}

bool has_operator(const std::string& expr) {
  std::string t = trim(expr);
  for (size_t i = 1; i < t.size(); ++i) {  // a leading sign is not an operation
    char c = t[i];
    if (c == '+' || c == '-' || c == '*' || c == '/' || c == '^' || c == '!' || is_utf8_op(t, i)) {
      return true;
    }
  }
  return false;
}

bool digit(char c) { return c >= '0' && c <= '9'; }

// "1,234" -> "1234" (commas between a digit and exactly three digits). By hand, not with
// std::regex, whose matcher recurses per character and overflows the stack on long lines.
std::string drop_thousands(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    bool separator = s[i] == ',' && i > 0 && digit(s[i - 1]) && i + 3 < s.size() &&
                     digit(s[i + 1]) && digit(s[i + 2]) && digit(s[i + 3]) &&
                     !(i + 4 < s.size() && digit(s[i + 4]));
    if (!separator) out += s[i];
  }
  return out;
}

// Skips the characters of `set` from s[*i] on.
void skip_any(const std::string& s, const char* set, size_t* i) {
  while (*i < s.size() && s[*i] != '\0' && std::strchr(set, s[*i]) != nullptr) ++*i;
}

bool starts_with_nocase(const std::string& s, size_t at, const char* word) {
  size_t n = std::strlen(word);
  if (at + n > s.size()) return false;
  for (size_t k = 0; k < n; ++k) {
    if (std::tolower(static_cast<unsigned char>(s[at + k])) != word[k]) return false;
  }
  return true;
}

// The text of an answer line "[*_ ]*(final )?answer[*_ ]*:[*_ ]*TEXT[*_ ]*" (case-insensitive),
// or nullopt when `line` is not one.
std::optional<std::string> answer_line_text(const std::string& line) {
  size_t i = 0;
  skip_any(line, "*_ ", &i);
  if (starts_with_nocase(line, i, "final ")) i += 6;
  if (!starts_with_nocase(line, i, "answer")) return std::nullopt;
  i += 6;
  skip_any(line, "*_ ", &i);
  if (i >= line.size() || line[i] != ':') return std::nullopt;
  ++i;
  skip_any(line, "*_ ", &i);
  size_t end = line.size();
  while (end > i && line[end - 1] != '\0' && std::strchr("*_ ", line[end - 1]) != nullptr) --end;
  return line.substr(i, end - i);
}

std::string strip_dollars(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '$'), s.end());
  return s;
}

// The arithmetic at the end of `s` (left side of an '='), or "" when what precedes it makes it
// part of something else ("x - 3", "2y").
std::string trailing_expr(const std::string& s) {
  size_t i = s.size();
  while (i > 0) {
    if (expr_char(s[i - 1])) {
      --i;
    } else if (i >= 2 && is_utf8_op(s, i - 2)) {
      i -= 2;
    } else {
      break;
    }
  }
  // A '!' cannot start an expression: it ends the sentence before it ("Good! 3 + 4 = 7").
  while (i < s.size() && (s[i] == '!' || s[i] == ' ')) ++i;
  std::string e = trim(s.substr(i));
  if (e.empty()) return "";
  std::string before = trim(s.substr(0, i));
  bool glued = i > 0 && s[i] != ' ' && std::isalnum(static_cast<unsigned char>(s[i - 1]));
  if (glued) return "";
  if (!std::isdigit(static_cast<unsigned char>(e[0])) && e[0] != '(' && e[0] != '$') {
    // Starts with an operator: it continues a term we cannot read ("x - 3").
    if (!before.empty() && std::isalnum(static_cast<unsigned char>(before.back()))) return "";
    if (e[0] != '-') return "";
  }
  return e;
}

// The arithmetic at the start of `s` (right side of an '='), or "" when it runs into a word.
std::string leading_expr(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    if (expr_char(s[i])) {
      ++i;
    } else if (is_utf8_op(s, i)) {
      i += 2;
    } else {
      break;
    }
  }
  if (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i])) && i > 0 && s[i - 1] != ' ') {
    return "";  // "3x"
  }
  std::string e = trim(s.substr(0, i));
  // A final '.' or '!' on the right side is punctuation ("3 + 4 = 7!" is an exclamation).
  while (!e.empty() && (e.back() == '.' || e.back() == '!' || e.back() == ' ')) e.pop_back();
  return trim(e);
}

}  // namespace

nlohmann::json MathCheck::details() const {
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& w : wrong_steps) {
    steps.push_back({{"line", w.line}, {"step", w.text}, {"computed", w.computed}});
  }
  nlohmann::json unchecked = nlohmann::json::array();
  for (const auto& u : unchecked_steps) {
    unchecked.push_back({{"line", u.line}, {"step", u.text}, {"reason", u.reason}});
  }
  return {{"given", given},
          {"answer_correct", answer_correct},
          {"steps_checked", steps_checked},
          {"wrong_steps", steps},
          {"unchecked_steps", unchecked}};
}

std::optional<std::string> extract_final_answer(const std::string& response) {
  size_t at = response.rfind("\\boxed{");
  if (at != std::string::npos) {
    size_t start = at + 7, depth = 1, i = start;
    for (; i < response.size() && depth > 0; ++i) {
      if (response[i] == '{')
        ++depth;
      else if (response[i] == '}')
        --depth;
    }
    if (depth == 0) return trim(response.substr(start, i - 1 - start));
  }
  std::vector<std::string> lines = split_lines(response);
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    std::string line = trim(*it);
    if (line.empty()) continue;
    auto text = answer_line_text(line);
    if (text) return trim(*text);
    return std::nullopt;  // the last non-empty line is not an answer line
  }
  return std::nullopt;
}

void check_steps(const std::string& response, MathCheck* check) {
  std::vector<std::string> lines = split_lines(response);
  for (size_t ln = 0; ln < lines.size(); ++ln) {
    std::string line = drop_thousands(lines[ln]);
    // Comparisons and code are not equations.
    if (line.find("==") != std::string::npos || line.find("<=") != std::string::npos ||
        line.find(">=") != std::string::npos || line.find("!=") != std::string::npos) {
      continue;
    }
    std::vector<std::string> parts;
    size_t start = 0;
    for (size_t eq; (eq = line.find('=', start)) != std::string::npos; start = eq + 1) {
      parts.push_back(line.substr(start, eq - start));
    }
    parts.push_back(line.substr(start));
    if (parts.size() < 2) continue;
    std::vector<std::string> exprs(parts.size());
    for (size_t i = 0; i < parts.size(); ++i) {
      if (i == 0) {
        exprs[i] = trailing_expr(parts[i]);
      } else if (i + 1 == parts.size()) {
        exprs[i] = leading_expr(parts[i]);
      } else {
        std::string whole = trim(parts[i]);
        exprs[i] = leading_expr(whole) == whole ? whole : "";
      }
    }
    for (size_t i = 0; i + 1 < exprs.size(); ++i) {
      const std::string &a = exprs[i], &b = exprs[i + 1];
      if (a.empty() || b.empty() || (!has_operator(a) && !has_operator(b))) continue;
      std::optional<Rational> va, vb;
      try {
        va = evaluate(strip_dollars(a));
        vb = evaluate(strip_dollars(b));
      } catch (const CalculatorSyntaxError&) {
        continue;  // not arithmetic after all ("(see 3 = 4" and the like)
      } catch (const MathError& e) {
        // Well-formed arithmetic we cannot compute exactly: not verified, so not accepted.
        check->unchecked_steps.push_back({static_cast<int>(ln + 1), a + " = " + b, e.what()});
        continue;
      }
      ++check->steps_checked;
      if (*va != *vb) {
        check->wrong_steps.push_back(
            {static_cast<int>(ln + 1), a + " = " + b, va->decimal_or_fraction()});
      }
    }
  }
}

MathCheck check_math(const std::string& response, const Rational& expected, bool check_steps_too) {
  MathCheck c;
  auto given = extract_final_answer(response);
  std::ostringstream fb;
  if (!given) {
    fb << "No final answer found. End with \\boxed{...} or a last line \"Answer: ...\".";
  } else {
    c.given = *given;
    auto value = parse_number(*given);
    if (!value) {
      fb << "The final answer \"" << *given << "\" is not a number I can read; give an integer, "
         << "a decimal or a fraction.";
    } else if (*value != expected) {
      fb << "The final answer " << *given << " is incorrect.";
    } else {
      c.answer_correct = true;
    }
  }
  if (check_steps_too) check_steps(response, &c);
  for (const auto& w : c.wrong_steps) {
    fb << (fb.tellp() > 0 ? " " : "") << "Line " << w.line << ": \"" << w.text
       << "\" is wrong; the left side equals " << w.computed << ".";
  }
  for (const auto& u : c.unchecked_steps) {
    fb << (fb.tellp() > 0 ? " " : "") << "Line " << u.line << ": \"" << u.text
       << "\" cannot be checked exactly (" << u.reason << "); show steps with smaller numbers.";
  }
  c.passed = c.answer_correct && c.wrong_steps.empty() && c.unchecked_steps.empty();
  c.verdict = c.passed ? "pass" : "fail";
  c.feedback = c.passed ? "" : fb.str();
  return c;
}

}  // namespace posttrain::synthetic
