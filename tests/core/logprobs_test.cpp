// target_logprobs against the plain full-vocabulary log_softmax (values and gradients, any chunk
// size, logits kept or recomputed), and the `posttrain logprobs` / `posttrain init` commands end to end: parity with the
// transformers reference, batch-size independence, and clear errors for bad rows.
#include "core/logprobs.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "model_test_util.h"

namespace posttrain::core {
namespace {

using nlohmann::json;

TEST(TargetLogprobs, MatchesFullLogSoftmaxAndItsGradients) {
  auto model = load_model(testing::model_fixture("llama3_untied"));
  at::manual_seed(3);
  auto targets = at::randint(0, 288, {2, 6}, at::kLong);
  targets[0][2] = kIgnoreTarget;
  targets[1][5] = kIgnoreTarget;
  const auto base = at::randn({2, 6, 64});
  const auto weight = model->lm_head_weight();
  // Reference: the whole [B, T, V] log_softmax.
  auto h_ref = base.clone().requires_grad_(true);
  const auto full = at::log_softmax(at::linear(h_ref, weight), -1);
  const auto valid = targets.ne(kIgnoreTarget);
  const auto ref = full.gather(2, targets.clamp_min(0).unsqueeze(2)).squeeze(2) * valid;
  const auto g = at::randn({2, 6});
  (ref * g).sum().backward();
  const auto ref_grad_h = h_ref.grad().clone();
  const auto ref_grad_w = weight.grad().clone();
  // keep 0: backward recomputes each chunk's logits; keep 1 GiB: the logits are kept.
  for (int64_t keep : {int64_t{0}, int64_t{1} << 30})
  for (int64_t chunk : {1, 4, 1000}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk) + " keep " + std::to_string(keep));
    model->zero_grad();
    auto h = base.clone().requires_grad_(true);
    const auto lp = target_logprobs(*model, h, targets, chunk, keep);
    EXPECT_TRUE(at::allclose(lp, ref.detach(), 1e-5, 1e-6));
    EXPECT_EQ(lp[0][2].item<float>(), 0.0f);
    (lp * g).sum().backward();
    EXPECT_TRUE(at::allclose(h.grad(), ref_grad_h, 1e-4, 1e-6));
    EXPECT_TRUE(at::allclose(weight.grad(), ref_grad_w, 1e-4, 1e-6));
  }
}

TEST(TargetLogprobs, TiedHeadGradientReachesTheEmbedding) {
  auto model = load_model(testing::model_fixture("tied_plain"));
  const auto ids = at::randint(1, 272, {1, 8}, at::kLong);
  token_logprobs(*model, {ids, {}, {}, {}}).sum().backward();
  const auto sd = model->named_parameters();
  EXPECT_GT(sd["model.embed_tokens.weight"].grad().abs().sum().item<double>(), 0.0);
}

TEST(TargetLogprobs, Bf16ModelStaysCloseToFloat32) {
  auto m32 = load_model(testing::model_fixture("llama3_untied"));
  auto m16 = load_model(testing::model_fixture("llama3_untied"), at::kCPU, at::kBFloat16);
  const auto ids = at::randint(1, 288, {2, 12}, at::kLong);
  at::NoGradGuard no_grad;
  const auto a = token_logprobs(*m32, {ids, {}, {}, {}});
  const auto b = token_logprobs(*m16, {ids, {}, {}, {}});
  EXPECT_EQ(b.scalar_type(), at::kFloat);
  EXPECT_LT((a - b).abs().max().item<double>(), 0.1);
}

// ---- the CLI ----

struct Cli {
  int status;
  std::string err;
};

Cli run_cli(const std::string& args) {
  const std::string err = testing::temp_dir("cli") + "/stderr";
  const int rc =
      std::system((std::string(POSTTRAIN_BIN) + " " + args + " >/dev/null 2>" + err).c_str());
  std::ifstream in(err);
  return {WEXITSTATUS(rc), std::string(std::istreambuf_iterator<char>(in), {})};
}

std::vector<json> read_jsonl(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

TEST(LogprobsCli, MatchesTransformersAndIgnoresBatchSize) {
  const std::string model = testing::model_fixture("llama3_untied");
  const auto ref = testing::read_json(model + "/reference.json");
  const std::string dir = testing::temp_dir("cli");
  {
    std::ofstream in(dir + "/in.jsonl");
    int i = 0;
    for (const auto& s : ref["sequences"]) {
      in << json{{"id", i++}, {"input_ids", s["input_ids"]}}.dump() << "\n";
    }
  }
  for (int bs : {1, 3}) {
    const std::string out = dir + "/out" + std::to_string(bs) + ".jsonl";
    const auto r = run_cli("logprobs --model " + model + " --input " + dir + "/in.jsonl --out " +
                           out + " --batch-size " + std::to_string(bs));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto rows = read_jsonl(out);
    ASSERT_EQ(rows.size(), ref["sequences"].size());
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(rows[i]["id"], static_cast<int>(i));
      EXPECT_EQ(rows[i]["input_ids"], ref["sequences"][i]["input_ids"]);
      const auto got = rows[i]["token_logprobs"].get<std::vector<double>>();
      const auto want = ref["sequences"][i]["token_logprobs"].get<std::vector<double>>();
      ASSERT_EQ(got.size(), want.size());
      for (size_t t = 0; t < got.size(); ++t) EXPECT_NEAR(got[t], want[t], 1e-4);
    }
  }
}

TEST(LogprobsCli, BadRowsNameFileLineAndField) {
  const std::string model = testing::model_fixture("llama3_untied");
  const std::string dir = testing::temp_dir("cli");
  auto expect_error = [&](const std::string& lines, const std::string& needle) {
    std::ofstream(dir + "/in.jsonl") << lines;
    const auto r = run_cli("logprobs --model " + model + " --input " + dir + "/in.jsonl --output " +
                           dir + "/o.jsonl");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("terminate"), std::string::npos) << r.err;
  };
  expect_error("{\"input_ids\": [1, 2]}\n{\"input_ids\": \"1 2\"}\n", "in.jsonl:2");
  expect_error("{\"input_ids\": [1, \"x\"]}\n", "input_ids");
  expect_error("{\"input_ids\": [1, 5000]}\n", "input_ids[1]");
  expect_error("{\"input_ids\": []}\n", "no tokens");
  expect_error("{\"prompt\": \"hi\"}\n", "input_ids");
  expect_error("[1, 2]\n", "in.jsonl:1");
  expect_error("{\"text\": 7}\n", "text");
  const auto r = run_cli("logprobs --model " + testing::model_fixture("reward") + " --input " +
                         dir + "/in.jsonl --output " + dir + "/o.jsonl");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("reward model"), std::string::npos) << r.err;
}

TEST(LogprobsCli, RowsLongerThanTheContextAreAnErrorUnlessTruncated) {
  // llama3_untied: max_position_embeddings 256. A 300-token row was scored silently before.
  const std::string model = testing::model_fixture("llama3_untied");
  const std::string dir = testing::temp_dir("cli");
  std::vector<int64_t> ids(300);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i % 280);
  std::ofstream(dir + "/in.jsonl") << json{{"input_ids", {1, 2}}}.dump() << "\n"
                                   << json{{"input_ids", ids}}.dump() << "\n";
  auto r = run_cli("logprobs --model " + model + " --input " + dir + "/in.jsonl --output " + dir +
                   "/o.jsonl");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("in.jsonl:2: the row has 300 tokens, more than the model's context of 256"),
            std::string::npos)
      << r.err;
  r = run_cli("logprobs --model " + model + " --input " + dir + "/in.jsonl --output " + dir +
              "/o.jsonl --truncate");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto rows = read_jsonl(dir + "/o.jsonl");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1]["input_ids"].size(), 256u);
  EXPECT_EQ(rows[1]["token_logprobs"].size(), 255u);
}

TEST(LogprobsCli, TextAndInputIdsMustAgree) {
  // A tiny model with the byte-level tokenizer: "hi" is BOS 256, 104, 105.
  const std::string dir = testing::temp_dir("cli");
  ASSERT_EQ(run_cli("init --preset tiny --seed 3 --output " + dir + "/m").status, 0);
  std::ofstream(dir + "/in.jsonl") << R"({"text": "hi", "input_ids": [256, 104, 105]})" "\n"
                                   << R"({"text": "hi", "input_ids": [104, 105]})" "\n"
                                   << R"({"text": "hi", "input_ids": [256, 104, 106]})" "\n";
  const auto r = run_cli("logprobs --model " + dir + "/m --input " + dir + "/in.jsonl --output " +
                         dir + "/o.jsonl");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("in.jsonl:3: field 'text': does not encode to the row's input_ids"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("first difference at token 2: 106 in input_ids, 105 from the text"),
            std::string::npos)
      << r.err;
}

TEST(InitCli, WritesALoadableCheckpointWithTokenizer) {
  const std::string dir = testing::temp_dir("init") + "/m";
  auto r = run_cli("init --preset tiny --seed 3 --output " + dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir + "/tokenizer.json"));
  auto model = load_model(dir);
  const auto cfg = model->config();
  EXPECT_EQ(cfg.hidden_size, preset_config("tiny").hidden_size);
  EXPECT_GE(cfg.vocab_size, 256 + 2);  // byte tokens plus specials
  EXPECT_TRUE(cfg.bos_token_id.has_value());
  // Scores text through the saved tokenizer.
  std::ofstream(dir + "/in.jsonl") << "{\"text\": \"hello world\"}\n";
  r = run_cli("logprobs --model " + dir + " --input " + dir + "/in.jsonl --output " + dir +
              "/out.jsonl");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto rows = read_jsonl(dir + "/out.jsonl");
  ASSERT_EQ(rows.size(), 1u);
  const auto ids = rows[0]["input_ids"].get<std::vector<int64_t>>();
  EXPECT_EQ(ids.size(), 1u + 11u);  // BOS + 11 bytes
  EXPECT_EQ(ids[0], *cfg.bos_token_id);
  for (double v : rows[0]["token_logprobs"].get<std::vector<double>>()) EXPECT_LT(v, 0.0);
  // A reward model folder.
  const std::string rm = testing::temp_dir("init") + "/rm";
  r = run_cli("init --preset tiny --reward-model --dtype bfloat16 --output " + rm);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto rcfg = load_config(rm);
  EXPECT_EQ(rcfg.kind, ModelKind::kRewardModel);
  EXPECT_TRUE(rcfg.pad_token_id.has_value());
  EXPECT_EQ(rcfg.dtype, "bfloat16");
  r = run_cli("init --preset huge --output " + rm);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("unknown preset 'huge'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace posttrain::core
