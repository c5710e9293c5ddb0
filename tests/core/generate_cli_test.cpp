// `posttrain generate` end to end on a fresh `posttrain init --preset tiny` model (byte-level
// tokenizer): every row kind, K samples with text and log-probs that `posttrain logprobs`
// reproduces, and bad input: one line naming file, line and field, non-zero exit, no output.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace posttrain::core {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct Result {
  int status;
  std::string output;  // stdout + stderr
};

Result run(const std::string& args) {
  const std::string cmd = std::string(POSTTRAIN_BIN) + " " + args + " 2>&1";
  Result r{0, ""};
  FILE* pipe = popen(cmd.c_str(), "r");
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) r.output.append(buffer, n);
  r.status = pclose(pipe);
  return r;
}

class GenerateCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::access(POSTTRAIN_BIN, X_OK) != 0) return;
    char pattern[] = "/tmp/posttrain_gencli_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    const auto r = run("init --preset tiny --seed 3 --output " + dir_ + "/model");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() {
    // Not fs::remove_all: LibTorch exports its own std::filesystem symbols.
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  void SetUp() override {
    if (::access(POSTTRAIN_BIN, X_OK) != 0) GTEST_SKIP() << "build the posttrain target first";
  }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
    return dir_ + "/" + name;
  }
  std::vector<json> read_jsonl(const std::string& path) {
    std::ifstream in(path);
    std::vector<json> rows;
    std::string line;
    while (std::getline(in, line)) rows.push_back(json::parse(line));
    return rows;
  }
  std::string model() const { return dir_ + "/model"; }
  static std::string dir_;
};
std::string GenerateCli::dir_;

TEST_F(GenerateCli, EveryRowKindGetsKSamplesThatLogprobsReproduces) {
  const auto in = write("in.jsonl",
                        "{\"input_ids\": [256, 72, 105], \"id\": \"a\"}\n"
                        "{\"text\": \"Once upon a time\"}\n"
                        "{\"prompt\": \"Say hi\"}\n"
                        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief\"}, "
                        "{\"role\": \"user\", \"content\": \"Hello\"}]}\n");
  const auto out = dir_ + "/out.jsonl";
  const auto r = run("generate --model " + model() + " --input " + in + " --output " + out +
                     " --samples 3 --max-new-tokens 12 --top-p 0.9 --top-k 50 --seed 4");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("tokens/s"), std::string::npos) << r.output;
  const auto rows = read_jsonl(out);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0]["id"], "a");  // input fields repeated, in input order
  json scoring = json::array();
  for (const auto& row : rows) {
    ASSERT_EQ(row["samples"].size(), 3u);
    const auto prompt = row.contains("prompt_ids") ? row["prompt_ids"] : row["input_ids"];
    for (const auto& s : row["samples"]) {
      const auto ids = s["output_ids"].get<std::vector<int64_t>>();
      ASSERT_GE(ids.size(), 1u);
      ASSERT_LE(ids.size(), 12u);
      EXPECT_TRUE(s["finish_reason"] == "stop" || s["finish_reason"] == "length");
      EXPECT_EQ(s["finish_reason"] == "length", ids.size() == 12u);
      EXPECT_TRUE(s["text"].is_string());
      double sum = 0;
      for (double lp : s["token_logprobs"]) sum += lp;
      EXPECT_NEAR(s["logprob"].get<double>(), sum, 1e-9);
      auto full = prompt.get<std::vector<int64_t>>();
      full.insert(full.end(), ids.begin(), ids.end());
      scoring.push_back(
          {{"input_ids", full}, {"n", prompt.size()}, {"expect", s["token_logprobs"]}});
    }
  }
  // The chat rows open the assistant header: Llama 3 ends the prompt with "\n\n" after it.
  const auto chat = rows[3]["prompt_ids"].get<std::vector<int64_t>>();
  EXPECT_EQ(chat.back(), '\n');
  std::string lines;
  for (const auto& s : scoring) lines += json{{"input_ids", s["input_ids"]}}.dump() + "\n";
  const auto score_in = write("score.jsonl", lines);
  const auto lp = run("logprobs --model " + model() + " --input " + score_in + " --output " + dir_ +
                      "/scored.jsonl");
  ASSERT_EQ(lp.status, 0) << lp.output;
  const auto scored = read_jsonl(dir_ + "/scored.jsonl");
  ASSERT_EQ(scored.size(), scoring.size());
  for (size_t i = 0; i < scored.size(); ++i) {
    const int64_t n = scoring[i]["n"];
    const auto& want = scoring[i]["expect"];
    for (size_t t = 0; t < want.size(); ++t) {
      EXPECT_NEAR(scored[i]["token_logprobs"][n - 1 + t].get<double>(), want[t].get<double>(),
                  1e-4);
    }
  }
}

TEST_F(GenerateCli, SameSeedSameSamplesWhateverShareTheBatch) {
  const auto one = write("one.jsonl", "{\"text\": \"abc\", \"seed\": 9}\n");
  const auto many = write("many.jsonl",
                          "{\"text\": \"other prompt\"}\n{\"text\": \"abc\", \"seed\": 9}\n"
                          "{\"text\": \"x\"}\n");
  const std::string common =
      " --samples 2 --max-new-tokens 10 --temperature 0.8 --model " + model();
  ASSERT_EQ(run("generate --input " + one + " --output " + dir_ + "/o1.jsonl" + common).status, 0);
  ASSERT_EQ(run("generate --input " + many + " --output " + dir_ + "/o2.jsonl" + common +
                " --max-batch-tokens 5 --page-size 2")
                .status,
            0);
  const auto a = read_jsonl(dir_ + "/o1.jsonl")[0]["samples"];
  const auto b = read_jsonl(dir_ + "/o2.jsonl")[1]["samples"];
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(a[k]["output_ids"], b[k]["output_ids"]);
    EXPECT_EQ(a[k]["seed"], b[k]["seed"]);
  }
}

TEST_F(GenerateCli, BadInputNamesFileLineAndFieldAndWritesNothing) {
  struct Case {
    std::string input, flags, expect;
  };
  const std::vector<Case> cases = {
      {"{\"text\": \"ok\"}\n{not json\n", "", "bad.jsonl:2"},
      {"{\"input_ids\": [1, 99999]}\n", "", "input_ids[1]"},
      {"{\"text\": \"ok\"}\n{\"input_ids\": []}\n", "", "bad.jsonl:2"},
      {"{\"other\": 1}\n", "", "'input_ids', 'text', 'prompt' or 'messages'"},
      {"{\"text\": \"ok\"}\n", "--samples 0", "--samples"},
      {"{\"text\": \"ok\"}\n", "--top-p 1.5", "top_p"},
      {"{\"text\": \"ok\"}\n", "--top-p 0", "top_p"},
  };
  for (const auto& c : cases) {
    const auto in = write("bad.jsonl", c.input);
    const auto out = dir_ + "/bad_out.jsonl";
    const auto r =
        run("generate --model " + model() + " --input " + in + " --output " + out + " " + c.flags);
    EXPECT_NE(r.status, 0) << c.input;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(out + ".tmp"));
  }
  // A prompt that fills the tiny preset's 2048-position context.
  std::string ids = "[";
  for (int i = 0; i < 2048; ++i) ids += (i ? ",65" : "65");
  const auto in = write("long.jsonl", "{\"text\": \"ok\"}\n{\"input_ids\": " + ids + "]}\n");
  const auto r = run("generate --model " + model() + " --input " + in + " --output " + dir_ +
                     "/long_out.jsonl");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("long.jsonl:2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("context"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace posttrain::core
