// `posttrain tokenize` end to end: text → ids, ids → text, messages → ids + SFT mask, and
// one-line errors naming file, line and field. Needs the posttrain executable (POSTTRAIN_BIN).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::core {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct Result {
  int status;
  std::string output;  // stdout + stderr
};

Result run(const std::string& args) {
  std::string cmd = std::string(POSTTRAIN_BIN) + " tokenize " + args + " 2>&1";
  Result r{0, ""};
  FILE* pipe = popen(cmd.c_str(), "r");
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) r.output.append(buffer, n);
  r.status = pclose(pipe);
  return r;
}

class TokenizeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(POSTTRAIN_BIN, X_OK) != 0) GTEST_SKIP() << "build the posttrain target first";
    char pattern[] = "/tmp/posttrain_tokcli_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    // Not fs::remove_all: LibTorch exports its own std::filesystem symbols.
    std::system(("rm -rf '" + dir_.string() + "'").c_str());
  }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream((dir_ / name).string()) << text;
    return (dir_ / name).string();
  }
  std::vector<json> read_jsonl(const std::string& path) {
    std::ifstream in(path);
    std::vector<json> rows;
    std::string line;
    while (std::getline(in, line)) rows.push_back(json::parse(line));
    return rows;
  }
  fs::path dir_;
};

const std::string kLlama3 = std::string(POSTTRAIN_FIXTURES) + "/tokenizer/llama3.json";

TEST_F(TokenizeCli, TextIdsAndMessagesLines) {
  Tokenizer tok = Tokenizer::from_file(kLlama3);
  const std::string text = "Größe 42 नमस्ते<|eot_id|>";
  json messages = json::parse(R"([{"role":"user","content":"hi"},
                                  {"role":"assistant","content":"hello"}])");
  std::string in = write("in.jsonl", json({{"text", text}, {"id", 7}}).dump() + "\n" +
                                         json({{"input_ids", {72, 105}}}).dump() + "\n" +
                                         json({{"messages", messages}}).dump() + "\n");
  std::string out = (dir_ / "out.jsonl").string();
  Result r = run("--tokenizer " + kLlama3 + " --input " + in + " --out " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  auto rows = read_jsonl(out);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["id"], 7);
  EXPECT_EQ(rows[0]["input_ids"].get<std::vector<int64_t>>(), tok.encode(text));
  EXPECT_EQ(rows[1]["text"], tok.decode({72, 105}));
  RenderedChat chat = render_chat(tok, parse_messages(messages, {}), ChatFormat::kLlama3);
  EXPECT_EQ(rows[2]["input_ids"].get<std::vector<int64_t>>(), chat.ids);
  EXPECT_EQ(rows[2]["sft_target_mask"].get<std::vector<uint8_t>>(), chat.sft_target_mask());
}

TEST_F(TokenizeCli, TextFlagPrintsOneLine) {
  Result r = run("--tokenizer byte-level --text 'hi'");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(json::parse(r.output)["input_ids"], json({256, 104, 105}));
  r = run("--tokenizer byte-level --no-special-tokens --text 'hi'");
  EXPECT_EQ(json::parse(r.output)["input_ids"], json({104, 105}));
}

TEST_F(TokenizeCli, RowsWithTextAndIdsKeepTheIdsWhichMustMatch) {
  // byte-level: "hi" is BOS 256, 104, 105. Before, the given ids were overwritten silently.
  std::string in = write("both.jsonl", "{\"text\": \"hi\", \"input_ids\": [256, 104, 105]}\n"
                                       "{\"text\": \"hi\", \"input_ids\": [104, 105]}\n");
  std::string out = (dir_ / "o.jsonl").string();
  Result r = run("--tokenizer byte-level --input " + in + " --output " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  auto rows = read_jsonl(out);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["input_ids"], json({256, 104, 105}));
  EXPECT_EQ(rows[1]["input_ids"], json({104, 105}));
  in = write("mismatch.jsonl", "{\"text\": \"hi\"}\n{\"text\": \"ho\", \"input_ids\": [256, 104, 105]}\n");
  r = run("--tokenizer byte-level --input " + in + " --output " + out);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("mismatch.jsonl:2: field 'text': does not encode to the row's input_ids"),
            std::string::npos)
      << r.output;
}

TEST_F(TokenizeCli, BadLinesFailWithFileLineAndField) {
  std::string in = write("bad.jsonl", "{\"text\": \"ok\"}\n{\"input_ids\": [1, 99999]}\n");
  Result r =
      run("--tokenizer byte-level --input " + in + " --output " + (dir_ / "o.jsonl").string());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("bad.jsonl:2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("input_ids[1]"), std::string::npos) << r.output;

  in = write("bad2.jsonl", "{\"messages\": [{\"role\": \"user\"}]}\n");
  r = run("--tokenizer byte-level --input " + in + " --output " + (dir_ / "o.jsonl").string());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("messages[0].content"), std::string::npos) << r.output;

  r = run("--tokenizer byte-level --chat-template vicuna --text x");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("vicuna"), std::string::npos) << r.output;

  r = run("--tokenizer " + std::string(POSTTRAIN_FIXTURES) +
          "/tokenizer/bad/unknown_pretokenizer.json --text x");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("Metaspace"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace posttrain::core
