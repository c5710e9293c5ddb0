// `posttrain dpo eval` against transformers: the policy (llama3_untied) and the reference (the
// same weights rounded to bf16, bf16_sharded) have per-token log-probs from a transformers
// forward committed in tests/fixtures/models/*/reference.json (make_fixtures.py). A pair built
// from a fixture sequence (prompt = its first P tokens, chosen = the rest, rejected = the next
// R tokens only) has sums of those committed log-probs as its expected values; rewards and
// loss follow by the formulas of loss.h. Bad rows give one error line naming file, line, field.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/cli_run.h"
#include "tests/dpo/dpo_test_util.h"

namespace posttrain::dpo {
namespace {

const std::string kModels = std::string(POSTTRAIN_FIXTURES) + "/models/";

struct Seq {
  std::vector<int64_t> ids;
  std::vector<double> lp;  // lp[i] = log p(ids[i + 1] | ids[..i])
};

std::vector<Seq> sequences(const std::string& model) {
  std::ifstream in(kModels + model + "/reference.json");
  const auto j = nlohmann::json::parse(in);
  std::vector<Seq> out;
  for (const auto& s : j["sequences"]) {
    out.push_back({s["input_ids"].get<std::vector<int64_t>>(),
                   s["token_logprobs"].get<std::vector<double>>()});
  }
  return out;
}

// Σ log p of ids[begin .. end) (each predicted by the token before it).
double span_sum(const Seq& s, size_t begin, size_t end) {
  double sum = 0;
  for (size_t t = begin; t < end; ++t) sum += s.lp[t - 1];
  return sum;
}

struct Case {
  size_t seq, prompt, rejected;  // sequence index, prompt tokens, rejected tokens
};

TEST(DpoEvalCli, SumsEqualTransformersAndRewardsFollow) {
  testing::TempDir dir;
  const auto policy = sequences("llama3_untied"), ref = sequences("bf16_sharded");
  const std::vector<Case> cases = {{1, 3, 3}, {2, 5, 7}, {3, 40, 20}};
  std::ostringstream input;
  for (const auto& c : cases) {
    const auto& ids = policy[c.seq].ids;
    std::vector<int64_t> prompt(ids.begin(), ids.begin() + c.prompt);
    std::vector<int64_t> chosen(ids.begin() + c.prompt, ids.end());
    std::vector<int64_t> rejected(ids.begin() + c.prompt, ids.begin() + c.prompt + c.rejected);
    input << nlohmann::json{{"prompt_input_ids", prompt},
                            {"chosen_input_ids", chosen},
                            {"rejected_input_ids", rejected},
                            {"id", c.seq}}
                 .dump()
          << "\n";
  }
  testing::write_file(dir / "in.jsonl", input.str());
  const double beta = 0.5;
  auto r = posttrain::testing::run_cli(
      "dpo eval --model " + kModels + "llama3_untied --reference " + kModels +
      "bf16_sharded --input " + dir / "in.jsonl" + " --output " + dir / "out.jsonl" +
      " --beta 0.5 --batch-size 2");
  ASSERT_EQ(r.code, 0) << r.output;
  std::ifstream out(dir / "out.jsonl");
  std::string line;
  double loss_sum = 0, acc = 0, margin = 0;
  for (const auto& c : cases) {
    ASSERT_TRUE(std::getline(out, line));
    const auto row = nlohmann::json::parse(line);
    EXPECT_EQ(row["id"], c.seq);  // input fields are kept
    const size_t L = policy[c.seq].ids.size(), P = c.prompt;
    const double pc = span_sum(policy[c.seq], P, L), pr = span_sum(policy[c.seq], P, P + c.rejected);
    const double rc = span_sum(ref[c.seq], P, L), rr = span_sum(ref[c.seq], P, P + c.rejected);
    EXPECT_NEAR(row["chosen_logps"].get<double>(), pc, 1e-4);
    EXPECT_NEAR(row["rejected_logps"].get<double>(), pr, 1e-4);
    EXPECT_NEAR(row["ref_chosen_logps"].get<double>(), rc, 1e-4);
    EXPECT_NEAR(row["ref_rejected_logps"].get<double>(), rr, 1e-4);
    EXPECT_NEAR(row["chosen_reward"].get<double>(), beta * (pc - rc), 1e-4);
    EXPECT_NEAR(row["rejected_reward"].get<double>(), beta * (pr - rr), 1e-4);
    // sigmoid: -log sigmoid(beta d) = log(1 + exp(-beta d))
    const double d = (pc - rc) - (pr - rr);
    const double loss = std::log1p(std::exp(-beta * d));
    EXPECT_NEAR(row["loss"].get<double>(), loss, 1e-4);
    loss_sum += loss;
    acc += beta * (pc - rc) > beta * (pr - rr);
    margin += beta * d;
  }
  EXPECT_FALSE(std::getline(out, line));
  // The summary is the last line of standard output.
  const auto last = r.output.substr(r.output.rfind('{'));
  const auto summary = nlohmann::json::parse(last);
  EXPECT_EQ(summary["pairs"], 3);
  EXPECT_NEAR(summary["loss"].get<double>(), loss_sum / 3, 1e-4);
  EXPECT_NEAR(summary["accuracy"].get<double>(), acc / 3, 1e-9);
  EXPECT_NEAR(summary["margin"].get<double>(), margin / 3, 1e-4);
}

TEST(DpoEvalCli, BadRowsAreOneLineNamingFileLineAndFieldAndWriteNothing) {
  testing::TempDir dir;
  const std::string base = "dpo eval --model " + kModels + "llama3_untied --reference " +
                           kModels + "bf16_sharded --input " + dir / "in.jsonl" + " --output " +
                           dir / "out.jsonl";
  auto expect_error = [&](const std::string& rows, const std::string& needle) {
    testing::write_file(dir / "in.jsonl", rows);
    auto r = posttrain::testing::run_cli(base);
    EXPECT_NE(r.code, 0) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_FALSE(std::ifstream(dir / "out.jsonl").good());
  };
  const std::string ok =
      R"({"prompt_input_ids": [5], "chosen_input_ids": [6, 7], "rejected_input_ids": [8]})";
  expect_error(ok + "\n" +
                   R"({"prompt_input_ids": [5], "chosen_input_ids": [6, 999], "rejected_input_ids": [8]})",
               "in.jsonl:2: field 'chosen_input_ids[1]'");
  expect_error(ok + "\n" + R"({"prompt_input_ids": [5], "chosen_input_ids": [6]})",
               "in.jsonl:2");
  expect_error(R"({"prompt_input_ids": [5], "chosen_input_ids": [6], "rejected_input_ids": [6]})",
               "rejected_input_ids");
  expect_error(R"({"prompt_input_ids": [5], "chosen_input_ids": [], "rejected_input_ids": [6]})",
               "chosen_input_ids");
  // A text row needs a tokenizer, which these fixture folders lack.
  expect_error(R"({"prompt": "a", "chosen": "b", "rejected": "c"})", "tokenizer");
  // A reference of another architecture.
  testing::write_file(dir / "in.jsonl", ok + "\n");
  auto r = posttrain::testing::run_cli("dpo eval --model " + kModels + "llama3_untied --reference " +
                                      kModels + "tied_plain --input " + dir / "in.jsonl" +
                                      " --output " + dir / "out.jsonl");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("another architecture"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace posttrain::dpo
