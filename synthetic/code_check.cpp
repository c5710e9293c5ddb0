// The check runs a fixed harness in the sandbox: it parses the candidate with ast (a syntax
// error stops there), executes it, then runs each test statement in the candidate's namespace.
// Results go to stdout as lines tagged with a random per-run marker, so whatever the candidate
// prints itself is ignored. (A hostile candidate in the same interpreter could still forge the
// marker; the checker guards training data against mistakes, not against an adversary.)
#include "synthetic/code_check.h"

#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "common/json_depth.h"

namespace posttrain::synthetic {

namespace {

const char kHarness[] = R"PY(import ast, json, sys
MARK = sys.argv[1]
def report(obj):
    sys.__stdout__.write("\n" + MARK + " " + json.dumps(obj) + "\n")
    sys.__stdout__.flush()
def describe(e):
    text = type(e).__name__
    msg = str(e)
    return text + (": " + msg if msg else "")
def clip(s, n=300):
    return s if len(s) <= n else s[:n] + "..."
src = open("solution.py", encoding="utf-8").read()
tests = open("tests.py", encoding="utf-8").read()
try:
    ast.parse(src, "solution.py")
except SyntaxError as e:
    report({"stage": "static", "error": "SyntaxError: %s (line %s)" % (e.msg, e.lineno)})
    sys.exit(3)
try:
    tree = ast.parse(tests, "tests.py")
except SyntaxError as e:
    report({"stage": "tests_syntax",
            "error": "SyntaxError in tests: %s (line %s)" % (e.msg, e.lineno)})
    sys.exit(4)
ns = {"__name__": "solution"}
try:
    exec(compile(src, "solution.py", "exec"), ns)
except BaseException as e:
    report({"stage": "load", "error": clip(describe(e))})
    sys.exit(5)
results = []
for node in tree.body:
    text = ast.get_source_segment(tests, node) or ""
    try:
        t = node.test if isinstance(node, ast.Assert) else None
        if (t is not None and isinstance(t, ast.Compare) and len(t.ops) == 1
                and isinstance(t.ops[0], ast.Eq)):
            got = eval(compile(ast.Expression(t.left), "tests.py", "eval"), ns)
            want = eval(compile(ast.Expression(t.comparators[0]), "tests.py", "eval"), ns)
            if got == want:
                results.append({"test": text, "ok": True})
            else:
                results.append({"test": text, "ok": False,
                                "error": clip("got %r, expected %r" % (got, want))})
        else:
            exec(compile(ast.Module([node], []), "tests.py", "exec"), ns)
            results.append({"test": text, "ok": True})
    except AssertionError as e:
        results.append({"test": text, "ok": False, "error": clip(describe(e))})
    except BaseException as e:
        results.append({"test": text, "ok": False, "error": clip(describe(e))})
report({"stage": "tests", "results": results})
sys.exit(0 if all(r["ok"] for r in results) else 1)
)PY";

std::string random_marker() {
  static thread_local std::mt19937_64 gen(std::random_device{}());
  std::ostringstream s;
  s << "@@posttrain-" << std::hex << gen() << gen();
  return s.str();
}

// The last report line tagged with `marker`, parsed; null when there is none.
nlohmann::json find_report(const std::string& out, const std::string& marker) {
  nlohmann::json found;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(marker + " ", 0) != 0) continue;
    try {  // a candidate can forge the marker: never accept a report nested too deep
      check_json_depth(line, Location{});
    } catch (const InputError&) {
      continue;
    }
    auto j = nlohmann::json::parse(line.substr(marker.size() + 1), nullptr, false);
    if (!j.is_discarded() && j.is_object()) found = j;
  }
  return found;
}

std::string tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

}  // namespace

nlohmann::json CodeCheck::details() const {
  nlohmann::json failed = nlohmann::json::array();
  for (const auto& t : tests) {
    if (!t.passed) failed.push_back({{"test", t.test}, {"error", t.error}});
  }
  return {{"stage", stage},
          {"tests_passed", n_passed},
          {"tests_total", tests.size()},
          {"failed", failed},
          {"run", run.describe()}};
}

std::optional<std::string> first_code_block(const std::string& response) {
  size_t open = response.find("```");
  if (open == std::string::npos) return std::nullopt;
  size_t body = response.find('\n', open);
  if (body == std::string::npos) return std::nullopt;
  ++body;
  size_t close = response.find("```", body);
  if (close == std::string::npos) return std::nullopt;  // unterminated block
  return response.substr(body, close - body);
}

CodeCheck check_code(const std::string& response, const std::vector<std::string>& tests,
                     const Sandbox& sandbox, int slot) {
  auto code = first_code_block(response);
  if (!code) {
    CodeCheck c;
    c.verdict = "error";
    c.stage = "extract";
    c.feedback = "No fenced code block found. Put the complete function in one ```python block.";
    return c;
  }
  return check_code_source(*code, tests, sandbox, slot);
}

CodeCheck check_code_source(const std::string& code, const std::vector<std::string>& tests,
                            const Sandbox& sandbox, int slot) {
  CodeCheck c;
  std::string tests_src;
  for (const auto& t : tests) tests_src += t + "\n";
  std::string marker = random_marker();
  Program program;
  program.files = {{"harness.py", kHarness}, {"solution.py", code}, {"tests.py", tests_src}};
  program.argv = {"python", "-I", "-B", "harness.py", marker};
  c.run = sandbox.run(program, slot);
  nlohmann::json report = find_report(c.run.out, marker);

  if (c.run.verdict == Verdict::kTimeout || c.run.verdict == Verdict::kLimit) {
    c.verdict = verdict_name(c.run.verdict);
    c.stage = "run";
    std::ostringstream seconds;
    seconds << sandbox.options().limits.wall_seconds;
    c.feedback =
        c.run.verdict == Verdict::kTimeout
            ? "The program did not finish within " + seconds.str() +
                  " s (timed out); look for an infinite loop or a slow algorithm."
            : "The program exceeded the " + c.run.limit + " limit of the sandbox and was stopped.";
    return c;
  }
  if (report.is_null()) {
    c.verdict = "error";
    c.stage = "run";
    c.feedback = "The program ended before the tests could run (" + c.run.describe() + "). " +
                 tail(c.run.err, 400);
    return c;
  }
  std::string stage = report.value("stage", "");
  c.stage = stage == "tests_syntax" ? "tests" : stage;
  if (stage != "tests") {
    c.verdict = "error";
    std::string error = report.value("error", "");
    c.feedback = stage == "static" ? "The code does not parse: " + error
                 : stage == "load" ? "Running the code failed before any test: " + error
                                   : error;
    return c;
  }
  for (const auto& r : report["results"]) {
    TestOutcome t{r.value("test", ""), r.value("ok", false), r.value("error", "")};
    c.n_passed += t.passed;
    c.tests.push_back(std::move(t));
  }
  c.passed = c.n_passed == static_cast<int>(c.tests.size()) && !c.tests.empty();
  c.verdict = c.passed ? "pass" : "fail";
  if (!c.passed) {
    std::ostringstream fb;
    int failed = static_cast<int>(c.tests.size()) - c.n_passed, shown = 0;
    fb << failed << " of " << c.tests.size() << " tests failed:";
    for (const auto& t : c.tests) {
      if (t.passed) continue;
      if (shown++ == 3) {
        fb << "\n(and " << failed - 3 << " more)";
        break;
      }
      fb << "\n" << t.test << "  ->  " << t.error;
    }
    c.feedback = fb.str();
  }
  return c;
}

}  // namespace posttrain::synthetic
