// Checkpoint averaging against a mean computed by hand from the inputs' tensors: uniform and
// weighted, float32 and bfloat16, single-file and sharded inputs; refusal of mismatched configs,
// shapes, tensor sets and tokenizers; lineage in the store; the CLI.
#include "recipes/average.h"
#include "common/files.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <ftw.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/checkpoint/safetensors.h"
#include "core/model/llama.h"
#include "core/model/llama_config.h"
#include "datastore/store.h"

namespace posttrain::recipes {
namespace {

namespace fs = std::filesystem;

void remove_tree(const fs::path& dir) { posttrain::remove_tree(dir.string()); }  // see common/files.h
using nlohmann::json;

class AverageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("posttrain_average_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    remove_tree(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { remove_tree(root_); }

  // A tiny checkpoint drawn with `seed`, saved in `dtype`, sharded when max_shard_bytes > 0,
  // with a (fake but fixed) tokenizer.json so tokenizer comparison has something to compare.
  std::string make_checkpoint(const std::string& name, uint64_t seed,
                              at::ScalarType dtype = at::kFloat, size_t max_shard_bytes = 0,
                              core::LlamaConfig config = core::preset_config("tiny")) {
    const std::string dir = (root_ / name).string();
    core::LlamaModel model(config);
    model->reset_parameters(seed);
    core::save_model(*model, dir, dtype, max_shard_bytes);
    std::ofstream(fs::path(dir) / "tokenizer.json") << R"({"model": {"type": "BPE"}})";
    return dir;
  }

  // name -> tensor (float64) of every tensor in `dir`, read independently of the averager.
  static std::map<std::string, at::Tensor> tensors_of(const std::string& dir) {
    std::map<std::string, at::Tensor> out;
    for (const auto& [name, file] : core::checkpoint_tensor_files(dir)) {
      out[name] = core::SafetensorsFile(file).read(name).to(at::kDouble);
    }
    return out;
  }

  // Asserts out == sum_i w_i * inputs_i tensor by tensor, within `tol`.
  static void expect_mean(const std::string& out, const std::vector<std::string>& inputs,
                          const std::vector<double>& w, double tol) {
    std::vector<std::map<std::string, at::Tensor>> in;
    for (const auto& dir : inputs) in.push_back(tensors_of(dir));
    const auto got = tensors_of(out);
    ASSERT_EQ(got.size(), in[0].size());
    for (const auto& [name, tensor] : in[0]) {
      at::Tensor expected = at::zeros_like(tensor);
      for (size_t i = 0; i < in.size(); ++i) expected += w[i] * in[i].at(name);
      ASSERT_TRUE(got.count(name)) << name;
      EXPECT_LT((got.at(name) - expected).abs().max().item<double>(), tol) << name;
    }
  }

  static void write_text(const fs::path& path, const std::string& text) {
    std::ofstream(path) << text;
  }
  static std::string read_text(const fs::path& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // Expects average_checkpoints to throw InputError whose message contains every `parts`.
  void expect_refused(const std::vector<std::string>& inputs,
                      const std::vector<std::string>& parts) {
    try {
      average_checkpoints({inputs, {}, (root_ / "out").string()});
      ADD_FAILURE() << "accepted mismatched inputs";
    } catch (const InputError& e) {
      for (const auto& part : parts) {
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      }
    }
  }

  fs::path root_;
};

TEST_F(AverageTest, UniformMeanOfThreeEqualsTheHandMean) {
  const auto a = make_checkpoint("a", 1), b = make_checkpoint("b", 2), c = make_checkpoint("c", 3);
  const std::string out = (root_ / "out").string();
  const AverageResult r = average_checkpoints({{a, b, c}, {}, out});
  EXPECT_EQ(r.weights, (std::vector<double>{1.0 / 3, 1.0 / 3, 1.0 / 3}));
  EXPECT_EQ(r.files, (std::vector<std::string>{"model.safetensors"}));
  EXPECT_EQ(static_cast<size_t>(r.tensors), tensors_of(a).size());
  expect_mean(out, {a, b, c}, r.weights, 1e-7);
  // A hand-checked element: the mean of the three first elements of the embedding.
  const std::string emb = "model.embed_tokens.weight";
  const double x =
      (tensors_of(a)[emb][0][0].item<double>() + tensors_of(b)[emb][0][0].item<double>() +
       tensors_of(c)[emb][0][0].item<double>()) /
      3;
  EXPECT_NEAR(tensors_of(out)[emb][0][0].item<double>(), x, 1e-7);
  // Side files copied, and the result loads as a model.
  EXPECT_EQ(read_text(fs::path(out) / "config.json"), read_text(fs::path(a) / "config.json"));
  EXPECT_EQ(read_text(fs::path(out) / "tokenizer.json"), read_text(fs::path(a) / "tokenizer.json"));
  EXPECT_TRUE(fs::exists(fs::path(out) / "generation_config.json"));
  EXPECT_NO_THROW(core::load_model(out));
}

TEST_F(AverageTest, WeightsAreNormalised) {
  const auto a = make_checkpoint("a", 1), b = make_checkpoint("b", 2);
  const std::string out = (root_ / "out").string();
  const AverageResult r = average_checkpoints({{a, b}, {2, 1}, out});
  ASSERT_EQ(r.weights.size(), 2u);
  EXPECT_DOUBLE_EQ(r.weights[0], 2.0 / 3);
  EXPECT_DOUBLE_EQ(r.weights[1], 1.0 / 3);
  expect_mean(out, {a, b}, {2.0 / 3, 1.0 / 3}, 1e-7);
}

TEST_F(AverageTest, Bfloat16InputsGiveTheRoundedFloat32Mean) {
  const auto a = make_checkpoint("a", 1, at::kBFloat16), b = make_checkpoint("b", 2, at::kBFloat16);
  const std::string out = (root_ / "out").string();
  average_checkpoints({{a, b}, {1, 3}, out});
  for (const auto& [name, file] : core::checkpoint_tensor_files(out)) {
    core::SafetensorsFile f(file);
    EXPECT_EQ(f.entry(name).dtype, at::kBFloat16) << name;
    const at::Tensor x =
        core::SafetensorsFile((fs::path(a) / "model.safetensors").string()).read(name, at::kFloat);
    const at::Tensor y =
        core::SafetensorsFile((fs::path(b) / "model.safetensors").string()).read(name, at::kFloat);
    const at::Tensor expected = (x * 0.25 + y * 0.75).to(at::kBFloat16);
    EXPECT_TRUE(at::equal(f.read(name), expected)) << name;
  }
}

TEST_F(AverageTest, ShardedInputsKeepTheFirstInputsSharding) {
  const auto a = make_checkpoint("a", 1, at::kFloat, 1 << 20);
  const auto b = make_checkpoint("b", 2, at::kFloat, 1 << 20);
  const auto c = make_checkpoint("c", 3);  // single file, mixed with sharded ones
  ASSERT_TRUE(fs::exists(fs::path(a) / "model.safetensors.index.json"));
  const std::string out = (root_ / "out").string();
  const AverageResult r = average_checkpoints({{a, b, c}, {1, 1, 2}, out});
  EXPECT_GT(r.files.size(), 1u);
  const json index = json::parse(read_text(fs::path(out) / "model.safetensors.index.json"));
  const json index_a = json::parse(read_text(fs::path(a) / "model.safetensors.index.json"));
  EXPECT_EQ(index["weight_map"], index_a["weight_map"]);
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), r.bytes);
  EXPECT_FALSE(fs::exists(fs::path(out) / "model.safetensors"));
  expect_mean(out, {a, b, c}, {0.25, 0.25, 0.5}, 1e-7);
}

TEST_F(AverageTest, IrrelevantConfigFieldsAreIgnored) {
  const auto a = make_checkpoint("a", 1), b = make_checkpoint("b", 2);
  json config = json::parse(read_text(fs::path(b) / "config.json"));
  config["_name_or_path"] = "somewhere/else";
  config["transformers_version"] = "0.0.1";
  write_text(fs::path(b) / "config.json", config.dump());
  EXPECT_NO_THROW(average_checkpoints({{a, b}, {}, (root_ / "out").string()}));
}

TEST_F(AverageTest, MismatchedConfigIsRefusedNamingTheField) {
  const auto a = make_checkpoint("a", 1), b = make_checkpoint("b", 2);
  json config = json::parse(read_text(fs::path(b) / "config.json"));
  config["rope_theta"] = 500000.0;
  write_text(fs::path(b) / "config.json", config.dump());
  expect_refused({a, b}, {"config mismatch", "rope_theta", b});
}

TEST_F(AverageTest, MismatchedShapesAreRefusedNamingTheTensor) {
  core::LlamaConfig narrow = core::preset_config("tiny");
  narrow.intermediate_size = 256;
  const auto a = make_checkpoint("a", 1), b = make_checkpoint("b", 2, at::kFloat, 0, narrow);
  // Same config.json text, different tensors: only the shape check can catch it.
  fs::copy_file(fs::path(a) / "config.json", fs::path(b) / "config.json",
                fs::copy_options::overwrite_existing);
  expect_refused({a, b}, {"model.layers.0.mlp.down_proj.weight", "[128, 256] here", "[128, 384]"});
}

TEST_F(AverageTest, MismatchedTensorSetsAreRefused) {
  const auto a = make_checkpoint("a", 1), b = make_checkpoint("b", 2);
  // b gets an extra tensor.
  auto tensors = core::NamedTensors{};
  for (const auto& [name, t] : tensors_of(b)) tensors.emplace_back(name, t.to(at::kFloat));
  tensors.emplace_back("extra.weight", at::zeros({2, 2}));
  core::save_safetensors((fs::path(b) / "model.safetensors").string(), tensors, at::kFloat);
  expect_refused({a, b}, {"extra.weight", "is not in"});
  expect_refused({b, a}, {"extra.weight", "missing"});
}

TEST_F(AverageTest, MismatchedTokenizersAreRefused) {
  const auto a = make_checkpoint("a", 1), b = make_checkpoint("b", 2);
  write_text(fs::path(b) / "tokenizer.json", R"({"model": {"type": "WordPiece"}})");
  expect_refused({a, b}, {"tokenizer mismatch", "tokenizer.json"});
  fs::remove(fs::path(b) / "tokenizer.json");
  expect_refused({a, b}, {"tokenizer mismatch", "tokenizer.json", "missing"});
}

TEST_F(AverageTest, BadOptionsAreUsageErrors) {
  const auto a = make_checkpoint("a", 1), b = make_checkpoint("b", 2);
  const std::string out = (root_ / "out").string();
  EXPECT_THROW(average_checkpoints({{a}, {}, out}), UsageError);
  EXPECT_THROW(average_checkpoints({{a, b}, {1}, out}), UsageError);
  EXPECT_THROW(average_checkpoints({{a, b}, {1, 0}, out}), UsageError);
  EXPECT_THROW(average_checkpoints({{a, b}, {1, -2}, out}), UsageError);
  EXPECT_THROW(average_checkpoints({{a, b}, {}, a}), UsageError);
  fs::create_directories(out);
  write_text(fs::path(out) / "notes.txt", "mine");
  EXPECT_THROW(average_checkpoints({{a, b}, {}, out}), UsageError);  // not empty
  EXPECT_EQ(read_text(fs::path(out) / "notes.txt"), "mine");
  EXPECT_NO_THROW(average_checkpoints({{a, b}, {}, out, true}));
  EXPECT_EQ(read_text(fs::path(out) / "notes.txt"), "mine");  // only checkpoint files replaced
  EXPECT_THROW(parse_weights("1,x"), UsageError);
  EXPECT_THROW(parse_weights("1,2.5abc"), UsageError);
  EXPECT_EQ(parse_weights("1,2.5,3e-1"), (std::vector<double>{1, 2.5, 0.3}));
}

TEST_F(AverageTest, LineageIsRecordedInTheStore) {
  const auto a = make_checkpoint("a", 1), b = make_checkpoint("b", 2);
  const std::string db = (root_ / "store.db").string();
  int64_t b_id = 0;
  {
    auto store = datastore::Store::open(db);
    b_id = store.add_checkpoint(fs::weakly_canonical(b).string(), "sft", 2);
  }
  const AverageOptions options{{a, b}, {3, 1}, (root_ / "out").string()};
  const AverageResult r = average_checkpoints(options);
  const int64_t id = record_average(db, options, r);
  auto store = datastore::Store::open(db);
  const auto row = store.checkpoint(id);
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->stage, "average");
  EXPECT_EQ(row->round, 2);  // the highest round among known parents
  EXPECT_EQ(row->path, fs::weakly_canonical(options.output).string());
  ASSERT_EQ(row->parents.size(), 2u);
  EXPECT_EQ(row->parents[1], b_id);
  const auto a_row = store.checkpoint(row->parents[0]);
  ASSERT_TRUE(a_row.has_value());
  EXPECT_EQ(a_row->stage, "external");
  EXPECT_EQ(a_row->path, fs::weakly_canonical(a).string());
  ASSERT_EQ(row->weights.size(), 2u);
  EXPECT_DOUBLE_EQ(row->weights[0], 0.75);
  EXPECT_DOUBLE_EQ(row->weights[1], 0.25);
}

TEST_F(AverageTest, CommandLine) {
  const auto a = make_checkpoint("a", 1), b = make_checkpoint("b", 2);
  const std::string out = (root_ / "out").string(), db = (root_ / "s.db").string();
  const std::string err = (root_ / "err.txt").string();
  const auto run = [&](const std::string& args) {
    const int status = std::system(
        (std::string(POSTTRAIN_BIN) + " average " + args + " >/dev/null 2>" + err).c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(run("--output " + out + " " + a + " " + b + " --weights 1,3 --store " + db), 0)
      << read_text(err);
  expect_mean(out, {a, b}, {0.25, 0.75}, 1e-7);
  EXPECT_EQ(datastore::Store::open(db).checkpoints(std::string("average")).size(), 1u);
  // The finished checkpoint in `out` is not replaced by accident: a usage error (2) naming
  // --overwrite, the weights untouched; with --overwrite the new mean replaces them.
  EXPECT_EQ(run("--output " + out + " " + a + " " + b + " --weights 3,1"), 2);
  EXPECT_NE(read_text(err).find("--overwrite"), std::string::npos) << read_text(err);
  expect_mean(out, {a, b}, {0.25, 0.75}, 1e-7);
  EXPECT_EQ(run("--output " + out + " " + a + " " + b + " --weights 3,1 --overwrite"), 0)
      << read_text(err);
  expect_mean(out, {a, b}, {0.75, 0.25}, 1e-7);
  write_text(fs::path(b) / "tokenizer.json", "{}");
  EXPECT_NE(run("--out " + out + " " + a + " " + b + " --overwrite"), 0);
  EXPECT_NE(read_text(err).find("tokenizer mismatch"), std::string::npos) << read_text(err);
  EXPECT_NE(run("--output " + out + " " + a + " " + b + " --weights 1,-1"), 0);
}

}  // namespace
}  // namespace posttrain::recipes
