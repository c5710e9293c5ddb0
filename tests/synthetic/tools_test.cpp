// Tool calls in the Llama 3.1 format: parsing, the three tools, the executor that appends
// ipython results, the answer check, and the tool task generator.
#include "synthetic/tools.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "synthetic/rational.h"
#include "synthetic/tool_problems.h"

namespace posttrain::synthetic {
namespace {

const Sandbox& sandbox() {
  static Sandbox s([] {
    SandboxOptions o;
    o.uid_base = 61300;
    o.limits.wall_seconds = 3;
    return o;
  }());
  return s;
}

const ToolRegistry& registry() {
  static ToolRegistry r(&sandbox(), builtin_documents());
  return r;
}

const std::vector<std::string> kAll = {"calculator", "lookup", "python"};

TEST(ParseToolCall, BuiltinStyleJsonAndRawPython) {
  auto c = parse_tool_call("<|python_tag|>calculator.call(expression=\"2 + 3 * 4\")<|eom_id|>");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->tool, "calculator");
  EXPECT_EQ(c->args.at("expression"), "2 + 3 * 4");
  auto b = parse_tool_call("<|python_tag|>brave_search.call(query='Aurora \\'Library\\'', n=3)");
  EXPECT_EQ(b->tool, "lookup");
  EXPECT_EQ(b->written_name, "brave_search");
  EXPECT_EQ(b->args.at("query"), "Aurora 'Library'");
  EXPECT_EQ(b->args.at("n"), "3");
  auto j = parse_tool_call(
      "<|python_tag|>{\"name\": \"lookup\", \"parameters\": {\"query\": \"ferry\"}}");
  EXPECT_EQ(j->tool, "lookup");
  EXPECT_EQ(j->args.at("query"), "ferry");
  auto py = parse_tool_call("<|python_tag|>print(sum(range(10)))\n<|eom_id|>");
  EXPECT_EQ(py->tool, "python");
  EXPECT_EQ(py->code, "print(sum(range(10)))");
  EXPECT_FALSE(parse_tool_call("no tag here"));
  EXPECT_THROW(parse_tool_call("<|python_tag|>calculator.call(expression=\"2+2)"), InputError);
}

TEST(ParseToolCall, DeeplyNestedJsonParametersAreRefusedNotCrashed) {
  // Parameter values are written back out with dump(), which recurses: 100,000 levels used to
  // overflow the stack. Refused as a bad call instead.
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  try {
    parse_tool_call("<|python_tag|>{\"name\": \"lookup\", \"parameters\": {\"query\": " + deep +
                    "}}");
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("nested deeper than 256"), std::string::npos) << e.what();
  }
}

TEST(Tools, CalculatorIsExact) {
  EXPECT_EQ(registry().calculator("48213 * 7391 - 125").output, "356342158");
  EXPECT_EQ(registry().calculator("7 / 2").output, "7/2 (= 3.5)");
  EXPECT_EQ(registry().calculator("1 / 3").output, "1/3");
  ToolResult bad = registry().calculator("1 / 0");
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.output.find("division by zero"), std::string::npos);
}

TEST(Tools, LookupFindsTheDocumentHoldingTheFact) {
  ToolResult r = registry().lookup("How many books does the Brindle Archive hold?");
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.output.rfind("Brindle Archive:", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("17,950 books"), std::string::npos);
  EXPECT_FALSE(registry().lookup("zzzz qqqq").ok);
}

TEST(Tools, LookupOverADirectory) {
  auto dir =
      std::filesystem::temp_directory_path() / ("posttrain_docs_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "owls.txt") << "Snowy owls nest on the tundra.";
  std::ofstream(dir / "bees.md") << "Honey bees dance to share where flowers are.";
  std::ofstream(dir / "skip.bin") << "ignored";
  ToolRegistry local(nullptr, load_documents(dir.string()));
  EXPECT_EQ(local.lookup("where do owls nest").output, "owls: Snowy owls nest on the tundra.");
  EXPECT_EQ(local.names(), (std::vector<std::string>{"calculator", "lookup"}));
  std::filesystem::remove_all(dir);
  EXPECT_THROW(load_documents(dir.string()), IoError);
}

TEST(Tools, PythonRunsInTheSandbox) {
  ToolResult r = registry().python("import os\nprint(sum(range(101)), os.getuid() != 0)", 0);
  EXPECT_TRUE(r.ok) << r.output;
  EXPECT_EQ(r.output, "5050 True\n");
  ToolResult bad = registry().python("print('partial')\nraise ValueError('nope')", 0);
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.output.find("partial"), std::string::npos);
  EXPECT_NE(bad.output.find("ValueError: nope"), std::string::npos);
}

TEST(ToolExecutor, AppendsIpythonResultsBetweenCalls) {
  std::string attempt =
      "<|python_tag|>lookup.call(query=\"books Aurora Library\")<|eom_id|>"
      "<|python_tag|>calculator.call(expression=\"48213 - 17950\")<|eom_id|>"
      "The Aurora Library holds 30263 more books.\nAnswer: 30263<|eot_id|>";
  ToolRun run = execute_tool_attempt(attempt, registry(), kAll);
  ASSERT_EQ(run.messages.size(), 5u);
  EXPECT_EQ(run.messages[0]["role"], "assistant");
  EXPECT_EQ(run.messages[0]["content"],
            "<|python_tag|>lookup.call(query=\"books Aurora Library\")");
  EXPECT_EQ(run.messages[1]["role"], "ipython");
  EXPECT_NE(run.messages[1]["content"].get<std::string>().find("48,213"), std::string::npos);
  EXPECT_EQ(run.messages[3]["content"], "30263");
  EXPECT_EQ(run.messages[4]["content"],
            "The Aurora Library holds 30263 more books.\nAnswer: 30263");
  EXPECT_EQ(run.calls, 2);
  EXPECT_EQ(run.successful_calls, 2);
}

TEST(ToolCheck, RightWrongAndDisallowed) {
  nlohmann::json list = {"<|python_tag|>print(2**20)", "Answer: 1048576"};
  ToolCheck ok = check_tool_attempt(list, "1048576", registry(), {"python"}, true);
  EXPECT_TRUE(ok.passed) << ok.feedback;
  ToolCheck off = check_tool_attempt("<|python_tag|>print(2**20)<|eom_id|>Answer: 1048575",
                                     "1048576", registry(), {"python"}, true);
  EXPECT_FALSE(off.passed);
  EXPECT_NE(off.feedback.find("1048575 is incorrect"), std::string::npos);
  ToolCheck no_tool =
      check_tool_attempt("Answer: 1048576", "1048576", registry(), {"python"}, true);
  EXPECT_FALSE(no_tool.passed);
  EXPECT_NE(no_tool.feedback.find("Use the tools"), std::string::npos);
  ToolCheck not_allowed = check_tool_attempt(
      "<|python_tag|>calculator.call(expression=\"2^20\")<|eom_id|>Answer: 1048576", "1048576",
      registry(), {"python"}, true);
  EXPECT_FALSE(not_allowed.passed);
  EXPECT_NE(not_allowed.feedback.find("not available"), std::string::npos);
  ToolCheck name = check_tool_attempt(
      "<|python_tag|>lookup.call(query=\"who founded the Aurora Library\")<|eom_id|>"
      "Answer: mira santos.",
      "Mira Santos", registry(), {"lookup"}, true);
  EXPECT_TRUE(name.passed) << name.feedback;
  ToolCheck dangling =
      check_tool_attempt("<|python_tag|>print(1)<|eom_id|>", "1", registry(), {"python"}, true);
  EXPECT_FALSE(dangling.passed);
}

// synthetic/README.md: `Environment: ipython` is tool-call mode; the code interpreter is offered
// per task, and a task without it says so in its system prompt, as the checker then refuses it.
TEST(ToolSystemPrompt, SaysWhetherTheCodeInterpreterIsOffered) {
  const std::string calc = tool_system_prompt({"calculator"});
  EXPECT_EQ(calc.rfind("Environment: ipython\nTools: calculator\n", 0), 0u) << calc;
  EXPECT_NE(calc.find("code interpreter is not available"), std::string::npos) << calc;
  ToolCheck code = check_tool_attempt("<|python_tag|>print(6*7)<|eom_id|>Answer: 42", "42",
                                      registry(), {"calculator"}, true);
  EXPECT_FALSE(code.passed);
  EXPECT_NE(code.feedback.find("tool 'code_interpreter' is not available here"),
            std::string::npos);
  const std::string py = tool_system_prompt({"python"});
  EXPECT_EQ(py.find("not available"), std::string::npos) << py;
  EXPECT_NE(py.find("right after <|python_tag|>"), std::string::npos) << py;
}

TEST(ToolProblems, DeterministicAndAnswerableWithTheTools) {
  auto a = make_tool_problems(11, 40, 0), b = make_tool_problems(11, 40, 0);
  std::set<std::string> families;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(to_json(a[i]).dump(), to_json(b[i]).dump());
    families.insert(a[i].family);
    EXPECT_NE(a[i].system.find("Environment: ipython"), std::string::npos);
    const auto& p = a[i];
    if (p.family == "calc") {
      // The expression in the prompt, run through the calculator tool, gives the answer.
      std::string head = "What is the exact value of ";
      std::string expr = p.prompt.substr(head.size(), p.prompt.find('?') - head.size());
      auto r = registry().calculator(expr);
      auto exact = parse_number(p.answer.get<std::string>());
      ASSERT_TRUE(exact);
      EXPECT_EQ(r.output.substr(0, r.output.find(' ')), exact->str()) << expr;
    }
  }
  EXPECT_EQ(families.size(), 4u);
}

TEST(ToolProblems, EveryNumericFactIsInItsDocument) {
  // Single-fact lookup tasks: the lookup tool, queried with the question, returns a document
  // that states the answer (with or without thousands separators).
  int checked = 0;
  for (const auto& p : make_tool_problems(2, 80, 1)) {
    if (p.family != "lookup") continue;
    std::string question = p.prompt.substr(0, p.prompt.find(" Look it up"));
    ToolResult r = registry().lookup(question);
    std::string ans = p.answer.get<std::string>(), text = r.output;
    text.erase(std::remove(text.begin(), text.end(), ','), text.end());
    EXPECT_NE(text.find(ans), std::string::npos) << question << " -> " << r.output;
    ++checked;
  }
  EXPECT_GT(checked, 5);
}

}  // namespace
}  // namespace posttrain::synthetic
