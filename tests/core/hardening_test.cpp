// Hostile configs, checkpoints and training folders: each is refused with a message naming what
// was wrong (and the numbers), before anything large is allocated, instead of running out of
// memory, resuming inexactly or crashing on a stray folder name.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/files.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/checkpoint/safetensors.h"
#include "core/data/packing.h"
#include "core/model/llama.h"
#include "core/model/model_memory.h"
#include "core/train/config.h"
#include "core/train/trainer.h"
#include "core/train/trainer_options.h"
#include "core/train/trainer_state.h"
#include "model_test_util.h"
#include "train_test_util.h"

namespace fs = std::filesystem;

namespace posttrain::core {
namespace {

using nlohmann::json;

std::string fresh_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("posttrain_hard_" + name + "_" + std::to_string(getpid()));
  posttrain::remove_tree(d.string());
  fs::create_directories(d);
  return d.string();
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(ModelMemory, ParameterCountMatchesTheBuiltModel) {
  // Property: the count from the config equals the numel of every parameter actually built.
  for (bool tied : {false, true}) {
    LlamaConfig c = testing::tiny_config();
    c.tie_word_embeddings = tied;
    LlamaModel m(c, at::TensorOptions().dtype(at::kFloat), false);
    int64_t numel = 0;
    for (const auto& p : m->parameters()) numel += p.numel();
    EXPECT_EQ(parameter_count(c), numel) << tied;
  }
}

TEST(ModelMemory, AModelThatCannotFitIsRefusedBeforeAllocating) {
  LlamaConfig c = testing::tiny_config();
  c.num_hidden_layers = 1000000000;  // 1e9 layers
  const std::string err = message_of(
      [&] { LlamaModel m(c, at::TensorOptions().dtype(at::kFloat), false); });
  EXPECT_NE(err.find("parameters need"), std::string::npos) << err;
  EXPECT_NE(err.find("GiB of memory is available"), std::string::npos) << err;
  // The numbers: 4 bytes each against the 1 GiB we say is available.
  const std::string small = message_of([&] {
    check_model_fits(testing::tiny_config(), 4, 1 << 10, "tiny");
  });
  EXPECT_NE(small.find("tiny: the model's " + std::to_string(parameter_count(testing::tiny_config())) +
                       " parameters need"),
            std::string::npos)
      << small;
  c = testing::tiny_config();
  c.vocab_size = std::numeric_limits<int64_t>::max() / 2;
  c.hidden_size = std::numeric_limits<int64_t>::max() / 4;
  EXPECT_EQ(parameter_count(c), std::numeric_limits<int64_t>::max());  // saturates, no overflow
}

TEST(LlamaConfigHardening, Llama3RopeScalingNeedsEveryField) {
  const json full = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                     {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  json base = {{"vocab_size", 300}, {"hidden_size", 64}, {"intermediate_size", 128},
               {"num_hidden_layers", 1}, {"num_attention_heads", 4}};
  base["rope_scaling"] = full;
  EXPECT_EQ(LlamaConfig::from_json(base, "c.json").rope_scaling.factor, 8.0);
  for (const char* key :
       {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
    json j = base;
    j["rope_scaling"].erase(key);
    EXPECT_EQ(message_of([&] { LlamaConfig::from_json(j, "c.json"); }),
              std::string("c.json: field 'rope_scaling.") + key + "': missing required field");
  }
}

TEST(CheckpointHardening, NonFiniteWeightsAreNamedOnLoad) {
  const std::string dir = fresh_dir("nan");
  auto model = load_model(testing::model_fixture("llama3_untied"));
  {
    at::NoGradGuard no_grad;
    auto sd = state_dict(*model);
    for (auto& [name, t] : sd) {
      if (name == "model.layers.1.mlp.up_proj.weight") {
        t[3][5] = std::numeric_limits<float>::quiet_NaN();
        t[4][6] = std::numeric_limits<float>::infinity();
      }
    }
  }
  save_model(*model, dir, at::kFloat);
  const std::string err = message_of([&] { load_model(dir); });
  EXPECT_NE(err.find("field 'model.layers.1.mlp.up_proj.weight': tensor "
                     "'model.layers.1.mlp.up_proj.weight' holds 2 of 8192 values that are NaN "
                     "or infinite"),
            std::string::npos)
      << err;
  EXPECT_NO_THROW(load_model(dir, at::kCPU, at::kFloat, /*allow_non_finite=*/true));
  posttrain::remove_tree(dir);
}

TEST(TrainConfigHardening, IntegerKeysHaveRanges) {
  ConfigSchema s;
  add_trainer_keys(&s);
  auto err = [&](const json& training) {
    return message_of([&] { s.resolve({{"training", training}, {"output", {{"dir", "o"}}}}, {}, "t.json"); });
  };
  EXPECT_EQ(err({{"micro_batch_size", 1000000000000LL}}),
            "t.json: field 'training.micro_batch_size': must be in [1, 65536], got 1000000000000");
  EXPECT_EQ(err({{"grad_accum_steps", 0}}),
            "t.json: field 'training.grad_accum_steps': must be in [1, 65536], got 0");
  EXPECT_NE(err({{"max_steps", 18446744073709551615ULL}}).find("must be in [0, 1000000000]"),
            std::string::npos);
  EXPECT_EQ(err({{"micro_batch_size", 65536}}), "");
}

TEST(CheckpointSteps, CheckedConversion) {
  EXPECT_EQ(checkpoint_step("checkpoint-42"), 42);
  EXPECT_EQ(checkpoint_step("checkpoint-9223372036854775807"), std::numeric_limits<int64_t>::max());
  EXPECT_FALSE(checkpoint_step("checkpoint-9223372036854775808"));
  EXPECT_FALSE(checkpoint_step("checkpoint-99999999999999999999"));
  EXPECT_FALSE(checkpoint_step("checkpoint-"));
  EXPECT_FALSE(checkpoint_step("checkpoint-4.tmp"));
  EXPECT_FALSE(checkpoint_step("checkpoint--4"));
}

// A 6-step run with checkpoints at steps 2 and 4 (the last step writes the final model, not a
// checkpoint), copied for each case.
class ResumeHardening : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    source_ = new std::string(fresh_dir("resume_src"));
    Trainer t(options(*source_), testing::tiny_model(3), testing::sum_loss(), rows(), nullptr);
    t.run();
  }
  static void TearDownTestSuite() {
    posttrain::remove_tree(*source_);
    delete source_;
  }
  static TrainerOptions options(const std::string& dir) {
    TrainerOptions o;
    o.dir = dir;
    o.lr = 3e-3;
    o.device = "cpu";
    o.max_steps = 6;
    o.micro_batch_size = 2;
    o.save_every = 2;
    o.threads = 1;
    return o;
  }
  static std::shared_ptr<TokenRowDataset> rows() {
    PackingOptions p;
    p.max_seq_len = 16;
    p.seed = 5;
    return std::make_shared<TokenRowDataset>(testing::examples(32, 11), p);
  }
  // A copy of the run's checkpoints (not its final model) in a fresh folder.
  std::string copy(const std::string& name) {
    const std::string dir = fresh_dir(name);
    for (const char* c : {"checkpoint-2", "checkpoint-4"}) {
      fs::copy(fs::path(*source_) / c, fs::path(dir) / c, fs::copy_options::recursive);
    }
    return dir;
  }
  TrainResult resume(const TrainerOptions& o) {
    Trainer t(o, testing::tiny_model(99), testing::sum_loss(), rows(), nullptr);
    return t.run();
  }
  static std::string* source_;
};
std::string* ResumeHardening::source_ = nullptr;

TEST_F(ResumeHardening, StrayFolderNamesAreNotCheckpoints) {
  const std::string dir = copy("stray");
  // Was "error: stoll"; now not a checkpoint of ours, even with a trainer_state.json inside.
  fs::copy(fs::path(dir) / "checkpoint-2", fs::path(dir) / "checkpoint-99999999999999999999",
           fs::copy_options::recursive);
  EXPECT_EQ(newest_checkpoint(dir), (fs::path(dir) / "checkpoint-4").string());
  EXPECT_EQ(resume(options(dir)).start_step, 4);
  posttrain::remove_tree(dir);
}

TEST_F(ResumeHardening, MissingOrExtraMomentsAreAnErrorUnlessAllowed) {
  for (bool drop : {true, false}) {
    const std::string dir = copy(drop ? "moments_missing" : "moments_extra");
    const std::string opt = dir + "/checkpoint-4/optimizer.safetensors";
    std::vector<std::pair<std::string, at::Tensor>> kept;
    std::map<std::string, std::string> meta;
    {
      SafetensorsFile f(opt);
      meta = f.header().metadata;
      meta.erase("format");
      for (const auto& n : f.names()) {
        if (drop && n == "model.norm.weight.exp_avg_sq") continue;
        kept.emplace_back(n, f.read(n, at::kFloat));
      }
    }
    if (!drop) kept.emplace_back("model.extra.weight.exp_avg", at::zeros({3}));
    save_safetensors(opt, kept, at::kFloat, meta);
    const std::string err = message_of([&] { resume(options(dir)); });
    EXPECT_NE(err.find(drop ? "1 missing moment(s) (first: model.norm.weight.exp_avg_sq"
                            : "1 entr(ies) for parameters the model does not have (first: "
                              "model.extra.weight.exp_avg)"),
              std::string::npos)
        << err;
    EXPECT_NE(err.find("set output.resume_inexact=true"), std::string::npos) << err;
    TrainerOptions o = options(dir);
    o.resume_inexact = true;
    EXPECT_EQ(resume(o).start_step, 4);
    posttrain::remove_tree(dir);
  }
}

TEST_F(ResumeHardening, CorruptNewestCheckpointNamesThePreviousOne) {
  const std::string dir = copy("corrupt");
  std::ofstream(dir + "/checkpoint-4/trainer_state.json") << "{\"step\": 4,";  // torn write
  const std::string err = message_of([&] { resume(options(dir)); });
  EXPECT_NE(err.find(dir + "/checkpoint-4 is corrupt"), std::string::npos) << err;
  EXPECT_NE(err.find("the previous complete checkpoint is " + dir + "/checkpoint-2"),
            std::string::npos)
      << err;
  TrainerOptions o = options(dir);
  o.resume_previous = true;
  EXPECT_EQ(resume(o).start_step, 2);
  posttrain::remove_tree(dir);
}

}  // namespace
}  // namespace posttrain::core
