// SFT example parsing (sft/sft_examples.h): messages / prompt-completion, errors with file, line
// and field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "sft/sft_examples.h"

namespace posttrain::sft {
namespace {

// Under the system temp dir, named with this process's id: several test processes (ctest -j,
// and other people's build folders on the same machine) run this test at the same time.
std::string write_file(const std::string& stem, const std::string& text) {
  const auto path =
      std::filesystem::temp_directory_path() / (stem + "_" + std::to_string(::getpid()) + ".jsonl");
  std::ofstream(path) << text;
  return path.string();
}

TEST(SftExamples, ParsesMessagesWithWeights) {
  auto j = nlohmann::json::parse(
      R"({"messages": [{"role": "user", "content": "hi"},
                       {"role": "assistant", "content": "a", "weight": 0},
                       {"role": "assistant", "content": "b"}]})");
  SftExample ex = parse_sft_example(j, Location{"f", 3, ""}, false);
  ASSERT_EQ(ex.messages.size(), 3u);
  EXPECT_FALSE(ex.is_text);
  EXPECT_EQ(ex.messages[1].weight, 0);
  EXPECT_EQ(ex.messages[2].weight, -1);  // default: resolved by the renderer
}

TEST(SftExamples, PromptCompletionAsChatOrText) {
  auto j = nlohmann::json::parse(R"({"prompt": "2+2?", "completion": "4"})");
  SftExample chat = parse_sft_example(j, Location{}, false);
  ASSERT_EQ(chat.messages.size(), 2u);
  EXPECT_EQ(chat.messages[0].role, "user");
  EXPECT_EQ(chat.messages[1].role, "assistant");
  EXPECT_EQ(chat.messages[1].content, "4");
  SftExample text = parse_sft_example(j, Location{}, true);
  EXPECT_TRUE(text.is_text);
  EXPECT_EQ(text.prompt, "2+2?");
  // A message-list prompt stays a list.
  auto k = nlohmann::json::parse(
      R"({"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
          "completion": "c"})");
  EXPECT_EQ(parse_sft_example(k, Location{}, false).messages.size(), 3u);
}

TEST(SftExamples, BadLinesNameFileLineAndField) {
  const auto path = write_file("posttrain_data_examples_bad",
                               "{\"prompt\": \"p\", \"completion\": \"c\"}\n"
                               "{\"prompt\": \"p\"}\n");
  try {
    read_sft_examples(path, false);
    FAIL() << "no error";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path + ":2"), std::string::npos) << what;
    EXPECT_NE(what.find("completion"), std::string::npos) << what;
  }
  const auto p2 =
      write_file("posttrain_data_examples_bad2", "{\"messages\": [{\"role\": \"user\"}]}\n");
  try {
    read_sft_examples(p2, false);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(":1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("content"), std::string::npos) << e.what();
  }
  const auto p3 = write_file("posttrain_data_examples_bad3", "{\"text\": \"x\"}\nnot json\n");
  EXPECT_THROW(read_sft_examples(p3, false), InputError);
  auto j = nlohmann::json::parse(R"({"prompt": 3, "completion": "c"})");
  EXPECT_THROW(parse_sft_example(j, Location{}, true), InputError);
  for (const auto& p : {path, p2, p3}) std::filesystem::remove(p);
}

// synth --candidates --output lines: kept ones are their messages (the problem's `prompt`
// beside them is not a prompt/completion pair), the others are marked to be skipped.
TEST(SftExamples, SynthOutputLines) {
  auto kept = nlohmann::json::parse(
      R"({"id": "math-3-0", "prompt": "2+2?", "kept": true, "attempts": [],
          "messages": [{"role": "user", "content": "2+2?"},
                       {"role": "assistant", "content": "5", "weight": 0},
                       {"role": "user", "content": "wrong"},
                       {"role": "assistant", "content": "4", "weight": 1}]})");
  SftExample ex = parse_sft_example(kept, Location{"s.jsonl", 1, ""}, true);
  EXPECT_FALSE(ex.not_kept);
  EXPECT_FALSE(ex.is_text);  // a dialogue even when strings are raw text
  ASSERT_EQ(ex.messages.size(), 4u);
  EXPECT_EQ(ex.messages[1].weight, 0);
  auto failed = nlohmann::json::parse(R"({"id": "math-3-2", "prompt": "1+1?", "kept": false})");
  EXPECT_TRUE(parse_sft_example(failed, Location{}, false).not_kept);
  EXPECT_THROW(tokenize_sft_example(core::Tokenizer::byte_level(), core::ChatFormat::kLlama3,
                                    parse_sft_example(failed, Location{}, false)),
               InputError);
  for (const char* bad : {R"({"prompt": "p", "kept": "yes"})", R"({"prompt": "p", "kept": true})",
                          R"({"messages": [{"role": "user", "content": "u"}], "kept": true,
                              "completion": "c"})"}) {
    try {
      parse_sft_example(nlohmann::json::parse(bad), Location{"s.jsonl", 4, ""}, false);
      FAIL() << bad;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("s.jsonl:4"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace posttrain::sft
