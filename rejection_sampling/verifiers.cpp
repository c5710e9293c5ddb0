// Verifier dispatch by prompt kind (see verifiers.h).
#include "rejection_sampling/verifiers.h"

#include <cmath>
#include <mutex>

#include "common/parallel.h"
#include "synthetic/code_check.h"
#include "synthetic/code_problems.h"
#include "synthetic/math_check.h"
#include "synthetic/rational.h"
#include "synthetic/sandbox.h"
#include "synthetic/tools.h"

namespace posttrain::rejection_sampling {

using nlohmann::json;

namespace {

std::optional<synthetic::Rational> math_answer(const json& checker) {
  const json& a = checker.contains("answer") ? checker["answer"] : json();
  const std::string text = a.is_string() ? a.get<std::string>() : a.is_number() ? a.dump() : "";
  return synthetic::parse_number(text);
}

std::vector<std::string> code_tests(const json& checker) {
  const json& t = checker.contains("tests") ? checker["tests"] : json();
  if (t.is_string()) return synthetic::split_tests(t.get<std::string>());
  std::vector<std::string> out;
  if (t.is_array()) {
    for (const auto& x : t) {
      if (x.is_string()) out.push_back(x.get<std::string>());
    }
  }
  return out;
}

const char* kKnownTools[] = {"calculator", "lookup", "python"};

}  // namespace

void check_checker(const std::string& kind, const json& checker, const Location& where) {
  auto at = [&](const std::string& field) { return Location{where.file, where.line, field}; };
  if (!checker.is_object()) throw InputError(at("kind"), kind + " prompts need checker fields");
  if (kind == "math") {
    if (!checker.contains("answer")) throw InputError(at("answer"), "missing (math needs it)");
    if (!math_answer(checker)) {
      throw InputError(at("answer"), "is not a number: " + checker["answer"].dump());
    }
  } else if (kind == "code") {
    if (!checker.contains("tests")) throw InputError(at("tests"), "missing (code needs it)");
    const json& t = checker["tests"];
    if (t.is_array()) {
      for (size_t i = 0; i < t.size(); ++i) {
        if (!t[i].is_string()) {
          throw InputError(at("tests[" + std::to_string(i) + "]"), "must be a string");
        }
      }
    } else if (!t.is_string()) {
      throw InputError(at("tests"), "must be assert source or a list of asserts");
    }
    if (code_tests(checker).empty()) throw InputError(at("tests"), "holds no assert");
  } else if (kind == "tool") {
    const json& tools = checker.contains("tools") ? checker["tools"] : json();
    if (!tools.is_array()) throw InputError(at("tools"), "must be a list of tool names");
    for (size_t i = 0; i < tools.size(); ++i) {
      const std::string f = "tools[" + std::to_string(i) + "]";
      if (!tools[i].is_string()) throw InputError(at(f), "must be a string");
      const std::string name = tools[i].get<std::string>();
      bool known = false;
      for (const char* k : kKnownTools) known = known || name == k;
      if (!known)
        throw InputError(at(f), "unknown tool '" + name + "' (calculator, lookup, python)");
    }
  } else {
    throw InputError(at("kind"), "unknown kind '" + kind + "' (math, code, tool)");
  }
}

std::string verifier_name(const std::string& kind) { return "verify:" + kind; }

struct Verifiers::State {
  VerifierOptions options;
  std::mutex mu;
  std::unique_ptr<synthetic::Sandbox> sandbox;
  std::unique_ptr<synthetic::ToolRegistry> registry;

  const synthetic::Sandbox* get_sandbox() {
    std::lock_guard<std::mutex> lock(mu);
    if (!sandbox) {
      synthetic::SandboxOptions so;
      so.limits.wall_seconds = options.timeout_seconds;
      so.limits.cpu_seconds = static_cast<int>(std::ceil(options.timeout_seconds));
      so.limits.memory_bytes = synthetic::sandbox_memory_bytes(options.memory_mb);
      sandbox = std::make_unique<synthetic::Sandbox>(so);
    }
    return sandbox.get();
  }
  const synthetic::ToolRegistry* get_registry(bool python) {
    const synthetic::Sandbox* sb = python ? get_sandbox() : nullptr;
    std::lock_guard<std::mutex> lock(mu);
    if (!registry || (python && !registry->has("python"))) {
      registry = std::make_unique<synthetic::ToolRegistry>(
          sb, options.docs_dir.empty() ? synthetic::builtin_documents()
                                       : synthetic::load_documents(options.docs_dir));
    }
    return registry.get();
  }
};

Verifiers::Verifiers(VerifierOptions options) : s_(std::make_unique<State>()) {
  s_->options = std::move(options);
}
Verifiers::~Verifiers() = default;

std::vector<Verdict> Verifiers::verify(const std::string& kind, const json& checker,
                                       const std::vector<std::string>& texts) {
  std::vector<Verdict> out(texts.size());
  std::function<Verdict(const std::string&, int)> check;
  if (kind == "math") {
    const auto answer = *math_answer(checker);
    const bool steps = s_->options.check_steps;
    check = [answer, steps](const std::string& text, int) {
      const auto c = synthetic::check_math(text, answer, steps);
      return Verdict{c.passed, c.verdict, c.feedback, c.details()};
    };
  } else if (kind == "code") {
    const auto tests = code_tests(checker);
    const synthetic::Sandbox* sandbox = s_->get_sandbox();
    check = [tests, sandbox](const std::string& text, int slot) {
      const auto c = synthetic::check_code(text, tests, *sandbox, slot);
      return Verdict{c.passed, c.verdict, c.feedback, c.details()};
    };
  } else {
    const auto tools = checker.at("tools").get<std::vector<std::string>>();
    bool python = false;
    for (const auto& t : tools) python = python || t == "python";
    const synthetic::ToolRegistry* registry = s_->get_registry(python);
    const json answer = checker.contains("answer") ? checker["answer"] : json();
    const bool require_use = s_->options.require_tool_use;
    check = [tools, registry, answer, require_use](const std::string& text, int slot) {
      try {
        const auto c =
            synthetic::check_tool_attempt(json(text), answer, *registry, tools, require_use, slot);
        return Verdict{c.passed, c.verdict, c.feedback, c.details()};
      } catch (const InputError& e) {
        return Verdict{false, "error", e.what(), nullptr};
      }
    };
  }
  // Math checks take microseconds and run inline: fresh threads beside LibTorch's spinning
  // intra-op pool (the engine and reward model run between calls) cost more than they save
  // (24 prompts x 4 math candidates on tiny: 8.0 s with 2 workers, 2.4 s inline). Code and
  // tool checks wait on sandboxed processes, so they run on the workers.
  const int workers = kind == "math" ? 1 : s_->options.workers;
  parallel_for(static_cast<int64_t>(texts.size()), workers,
               [&](int64_t i, int worker) { out[i] = check(texts[i], worker); });
  return out;
}

}  // namespace posttrain::rejection_sampling
