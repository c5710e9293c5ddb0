// HF checkpoint folders: save/load round trips (float32, bf16, sharded), streaming init,
// presets, and clear errors for missing/unexpected/mis-shaped tensors and malformed config.json.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/checkpoint/safetensors.h"
#include "core/model/llama.h"
#include "model_test_util.h"

namespace posttrain::core {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void copy_fixture(const std::string& name, const std::string& to) {
  fs::copy(testing::model_fixture(name), to, fs::copy_options::recursive);
}

at::Tensor logits_of(LlamaModelImpl& m) {
  at::NoGradGuard no_grad;
  return m.forward({at::arange(1, 12, at::kLong).view({1, 11}), {}, {}, {}});
}

void expect_same_parameters(LlamaModelImpl& a, LlamaModelImpl& b, at::ScalarType via) {
  const auto sa = state_dict(a), sb = state_dict(b);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_TRUE(at::equal(sa[i].second.to(via).to(at::kFloat), sb[i].second.to(at::kFloat)))
        << sa[i].first;
  }
}

TEST(Checkpoint, Float32RoundTripIsExact) {
  auto m = load_model(testing::model_fixture("llama3_untied"));
  const std::string dir = testing::temp_dir("ckpt");
  save_model(*m, dir, at::kFloat);
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/generation_config.json"));
  auto back = load_model(dir);
  expect_same_parameters(*m, *back, at::kFloat);
  EXPECT_TRUE(at::equal(logits_of(*m), logits_of(*back)));
  EXPECT_EQ(back->config().to_json(), m->config().to_json());
}

TEST(Checkpoint, Bf16ShardedRoundTrip) {
  auto m = load_model(testing::model_fixture("tied_plain"));
  const std::string dir = testing::temp_dir("ckpt");
  save_model(*m, dir, at::kBFloat16, /*max_shard_bytes=*/20000);
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  const auto index = testing::read_json(dir + "/model.safetensors.index.json");
  std::set<std::string> shards;
  for (const auto& [name, file] : index["weight_map"].items())
    shards.insert(file.get<std::string>());
  EXPECT_GT(shards.size(), 2u);
  EXPECT_EQ(index["weight_map"].size(), state_dict(*m).size());
  EXPECT_FALSE(index["weight_map"].contains("lm_head.weight"));  // tied
  uint64_t total = 0;
  for (const auto& s : shards) {
    SafetensorsFile f(dir + "/" + s);
    for (const auto& n : f.names()) total += f.entry(n).end - f.entry(n).begin;
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  EXPECT_EQ(load_config(dir).dtype, "bfloat16");
  auto back = load_model(dir);  // bf16 on disk, float32 in memory
  expect_same_parameters(*m, *back, at::kBFloat16);
  auto back16 = load_model(dir, at::kCPU, at::kBFloat16);
  EXPECT_EQ(back16->parameters()[0].scalar_type(), at::kBFloat16);
  // Saving again as one file removes the old shards.
  save_model(*back, dir, at::kFloat);
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir + "/" + *shards.begin()));
}

TEST(Checkpoint, RewardModelRoundTrip) {
  auto m = load_model(testing::model_fixture("reward"));
  EXPECT_TRUE(m->is_reward_model());
  const std::string dir = testing::temp_dir("ckpt");
  save_model(*m, dir, at::kFloat);
  const auto cfg = testing::read_json(dir + "/config.json");
  EXPECT_EQ(cfg["architectures"][0], "LlamaForSequenceClassification");
  EXPECT_EQ(cfg["pad_token_id"], 0);
  auto back = load_model(dir);
  EXPECT_TRUE(at::equal(logits_of(*m), logits_of(*back)));
}

TEST(Checkpoint, StreamingInitLoadsAndIsDeterministic) {
  auto config = preset_config("tiny");
  config.vocab_size = 300;
  const std::string a = testing::temp_dir("init"), b = testing::temp_dir("init");
  init_checkpoint(config, a, 7, at::kFloat, /*max_shard_bytes=*/300000);
  init_checkpoint(config, b, 7, at::kFloat, 0);
  EXPECT_TRUE(fs::exists(a + "/model.safetensors.index.json"));
  auto ma = load_model(a), mb = load_model(b);
  expect_same_parameters(*ma, *mb, at::kFloat);
  const auto sd = state_dict(*ma);
  const auto& emb = sd[0].second;
  EXPECT_NEAR(emb.std().item<double>(), config.initializer_range, 0.002);
  EXPECT_NEAR(emb.mean().item<double>(), 0.0, 0.002);
  EXPECT_TRUE(at::equal(sd.back().second, at::ones({config.hidden_size})));  // final norm
  const std::string c = testing::temp_dir("init");
  init_checkpoint(config, c, 8, at::kFloat, 0);
  EXPECT_FALSE(at::equal(state_dict(*load_model(c))[0].second, emb));
}

TEST(Checkpoint, PresetsHaveTheNamedShapes) {
  const auto smol = preset_config("smol-135m");
  EXPECT_EQ(smol.hidden_size, 576);
  EXPECT_EQ(smol.num_hidden_layers, 30);
  EXPECT_TRUE(smol.tie_word_embeddings);
  const auto l1 = preset_config("llama-1b");
  EXPECT_EQ(l1.rope_scaling.rope_type, "llama3");
  EXPECT_EQ(l1.rope_scaling.factor, 32.0);
  const auto l8 = preset_config("llama-8b");
  EXPECT_EQ(l8.intermediate_size, 14336);
  EXPECT_FALSE(l8.tie_word_embeddings);
  // Parameter counts from the layout: SmolLM2-135M has 134,515,008 parameters.
  int64_t n = 0;
  for (const auto& [name, shape] : hf_layout(smol)) {
    int64_t k = 1;
    for (auto d : shape) k *= d;
    n += k;
  }
  EXPECT_EQ(n, 134515008);
  EXPECT_THROW(preset_config("llama-70b"), UsageError);
}

// ---- bad input ----

void expect_load_error(const std::string& dir, const std::string& needle) {
  try {
    load_model(dir);
    ADD_FAILURE() << "loaded a bad checkpoint; expected '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

void rewrite_config(const std::string& dir, const std::function<void(json&)>& edit) {
  auto j = testing::read_json(dir + "/config.json");
  edit(j);
  std::ofstream(dir + "/config.json") << j.dump();
}

TEST(CheckpointBadInput, MissingUnexpectedAndMisShapedTensors) {
  auto m = load_model(testing::model_fixture("tied_plain"));
  auto sd = state_dict(*m);
  const std::string dir = testing::temp_dir("bad");
  copy_fixture("tied_plain", dir + "/m");
  const std::string d = dir + "/m";
  // Missing.
  auto missing = sd;
  missing.erase(missing.begin() + 3);
  save_safetensors(d + "/model.safetensors", missing, at::kFloat);
  expect_load_error(d, "missing tensor '" + sd[3].first + "'");
  // Unexpected.
  auto extra = sd;
  extra.emplace_back("model.layers.9.mlp.up_proj.weight", at::zeros({2, 2}));
  save_safetensors(d + "/model.safetensors", extra, at::kFloat);
  expect_load_error(d, "unexpected tensor 'model.layers.9.mlp.up_proj.weight'");
  // Mis-shaped.
  auto shaped = sd;
  shaped[1].second = at::zeros({5, 5});
  save_safetensors(d + "/model.safetensors", shaped, at::kFloat);
  expect_load_error(d, sd[1].first);
  expect_load_error(d, "has shape [5, 5]");
  // A tied model's redundant lm_head.weight is fine.
  auto tied = sd;
  tied.emplace_back("lm_head.weight", sd[0].second);
  save_safetensors(d + "/model.safetensors", tied, at::kFloat);
  EXPECT_NO_THROW(load_model(d));
  // Untied config without lm_head.weight: missing.
  rewrite_config(d, [](json& j) { j["tie_word_embeddings"] = false; });
  save_safetensors(d + "/model.safetensors", sd, at::kFloat);
  expect_load_error(d, "missing tensor 'lm_head.weight'");
}

TEST(CheckpointBadInput, ShardIndexProblems) {
  const std::string dir = testing::temp_dir("bad") + "/m";
  copy_fixture("bf16_sharded", dir);
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map": {"a": "../x"}})";
  expect_load_error(dir, "must be a plain name");
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map": [1]})";
  expect_load_error(dir, "weight_map");
  std::ofstream(dir + "/model.safetensors.index.json") << "{not json";
  expect_load_error(dir, "not valid JSON");
  fs::remove(dir + "/model.safetensors.index.json");
  expect_load_error(dir, "no model.safetensors");
}

TEST(CheckpointBadInput, MalformedConfigJson) {
  const std::string dir = testing::temp_dir("bad") + "/m";
  copy_fixture("tied_plain", dir);
  const std::string cfg = dir + "/config.json";
  const auto original = testing::read_json(cfg);
  auto with = [&](const std::function<void(json&)>& edit, const std::string& needle) {
    json j = original;
    edit(j);
    std::ofstream(cfg) << j.dump();
    expect_load_error(dir, needle);
  };
  with([](json& j) { j.erase("hidden_size"); }, "hidden_size");
  with([](json& j) { j["hidden_size"] = "big"; }, "hidden_size");
  with([](json& j) { j["num_key_value_heads"] = 3; }, "num_key_value_heads");
  with([](json& j) { j["rope_parameters"]["rope_type"] = "yarn"; }, "unsupported RoPE type 'yarn'");
  with([](json& j) { j["dtype"] = "int8"; }, "unsupported dtype 'int8'");
  with([](json& j) { j["model_type"] = "mistral"; }, "model_type");
  with([](json& j) { j["hidden_act"] = "gelu"; }, "hidden_act");
  with([](json& j) { j["attention_bias"] = true; }, "attention_bias");
  with([](json& j) { j["eos_token_id"] = {2, "x"}; }, "eos_token_id[1]");
  with(
      [](json& j) {
        j["architectures"] = {"LlamaForSequenceClassification"};
        j["pad_token_id"] = nullptr;
      },
      "pad_token_id");
  std::ofstream(cfg) << "{\"vocab_size\": 3,";
  expect_load_error(dir, "config.json");
  try {
    load_model(dir);
  } catch (const InputError& e) {
    EXPECT_EQ(e.where().file, cfg);
  }
}

}  // namespace
}  // namespace posttrain::core
