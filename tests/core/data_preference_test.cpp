// Preference examples in TRL's JSONL forms (core/data/preference.h): explicit and implicit
// prompts, strings and message lists, rankings best first, edits, labels, and errors that name
// the file, line and field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "core/data/preference.h"

namespace posttrain::core {
namespace {

using Json = nlohmann::json;

PreferenceExample parse(const std::string& text, PreferenceReadOptions o = {}) {
  return parse_preference_example(Json::parse(text), Location{"f.jsonl", 7, ""}, o);
}

// The InputError of parsing `text`, as "file:line: field 'x': ..." text; "" when it parsed.
std::string error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(DataPreference, StringPairIsTextUnlessAskedForChat) {
  const std::string row = R"({"prompt": "2+2=", "chosen": "4", "rejected": "5"})";
  PreferenceExample text = parse(row);
  EXPECT_TRUE(text.is_text);
  EXPECT_EQ(text.prompt_text, "2+2=");
  EXPECT_EQ(text.response_texts, (std::vector<std::string>{"4", "5"}));
  EXPECT_EQ(text.num_responses(), 2);
  EXPECT_FALSE(text.edited);
  EXPECT_FALSE(text.strength.has_value());
  EXPECT_EQ(text.round, -1);
  EXPECT_EQ(text.where.line, 7);

  PreferenceReadOptions chat_opts;
  chat_opts.strings_as_chat = true;
  PreferenceExample chat = parse(row, chat_opts);
  EXPECT_FALSE(chat.is_text);
  ASSERT_EQ(chat.prompt.size(), 1u);
  EXPECT_EQ(chat.prompt[0].role, "user");
  ASSERT_EQ(chat.responses.size(), 2u);
  EXPECT_EQ(chat.responses[0][0].role, "assistant");
  EXPECT_EQ(chat.responses[1][0].content, "5");
}

TEST(DataPreference, MessageListsAndMixedFormsAreChat) {
  PreferenceExample ex = parse(R"({"prompt": [{"role": "system", "content": "s"},
                                              {"role": "user", "content": "q"}],
                                   "chosen": [{"role": "assistant", "content": "good"}],
                                   "rejected": "bad"})");
  EXPECT_FALSE(ex.is_text);
  ASSERT_EQ(ex.prompt.size(), 2u);
  EXPECT_EQ(ex.responses[0][0].content, "good");
  EXPECT_EQ(ex.responses[1][0].role, "assistant");  // the string became an assistant turn
  EXPECT_EQ(ex.responses[1][0].content, "bad");
}

TEST(DataPreference, ImplicitPromptIsTheCommonPrefix) {
  // Conversations: the shared messages are the prompt, the rest the responses.
  PreferenceExample ex = parse(R"({
    "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a1"},
               {"role": "user", "content": "q2"}, {"role": "assistant", "content": "good"}],
    "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a1"},
                 {"role": "user", "content": "q2"}, {"role": "assistant", "content": "bad"}]})");
  ASSERT_EQ(ex.prompt.size(), 3u);
  EXPECT_EQ(ex.prompt[2].content, "q2");
  ASSERT_EQ(ex.responses[0].size(), 1u);
  EXPECT_EQ(ex.responses[0][0].content, "good");
  EXPECT_EQ(ex.responses[1][0].content, "bad");
  // Strings, as TRL's extract_prompt: common characters, the space before the difference goes
  // with the responses ("The sky is" + " blue" / " green").
  PreferenceExample s = parse(R"({"chosen": "The sky is blue", "rejected": "The sky is green"})");
  EXPECT_EQ(s.prompt_text, "The sky is");
  EXPECT_EQ(s.response_texts, (std::vector<std::string>{" blue", " green"}));
}

TEST(DataPreference, RankingKeepsTheRankedResponsesBestFirst) {
  PreferenceExample ex = parse(
      R"({"prompt": "p", "responses": ["a", "b", "c", "d"], "ranking": [2, 0, 3],
          "strength": "better", "source": "hs", "round": 2})");
  EXPECT_EQ(ex.response_texts, (std::vector<std::string>{"c", "a", "d"}));  // "b" unranked
  ASSERT_TRUE(ex.strength.has_value());
  EXPECT_EQ(*ex.strength, PreferenceStrength::kBetter);
  EXPECT_EQ(ex.source, "hs");
  EXPECT_EQ(ex.round, 2);
}

TEST(DataPreference, EditRanksAboveChosen) {
  PreferenceExample ex = parse(R"({"prompt": "p", "chosen": "ok", "rejected": "no",
                                   "edited": "great", "strength": "significantly_better"})");
  EXPECT_TRUE(ex.edited);
  EXPECT_EQ(ex.response_texts, (std::vector<std::string>{"great", "ok", "no"}));
  EXPECT_EQ(preference_strength_name(*ex.strength), std::string("significantly_better"));
  // An edit equal to chosen changed nothing: no edit.
  PreferenceExample same = parse(R"({"prompt": "p", "chosen": "ok", "rejected": "no",
                                     "edited": "ok"})");
  EXPECT_FALSE(same.edited);
  EXPECT_EQ(same.num_responses(), 2);
}

TEST(DataPreference, ReaderFillsTheSourceFromTheFileStem) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("ultra_" + std::to_string(::getpid()) + ".jsonl");
  std::ofstream(path) << R"({"prompt": "p", "chosen": "a", "rejected": "b"})" << "\n\n"
                      << R"({"prompt": "p", "chosen": "a", "rejected": "b", "source": "x"})"
                      << "\n"
                      << R"({"prompt": "p", "chosen": "a", "rejected": "a"})" << "\n";
  try {
    read_preference_examples(path.string());
    ADD_FAILURE() << "identical responses were accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.where().line, 4);
    EXPECT_EQ(e.where().field, "rejected");
  }
  std::ofstream(path) << R"({"prompt": "p", "chosen": "a", "rejected": "b"})" << "\n"
                      << R"({"prompt": "p", "chosen": "a", "rejected": "b", "source": "x"})";
  const auto all = read_preference_examples(path.string());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].source, "ultra_" + std::to_string(::getpid()));
  EXPECT_EQ(all[1].source, "x");
  EXPECT_EQ(all[1].where.line, 2);
  std::filesystem::remove(path);
}

TEST(DataPreference, MalformedRowsNameTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"prompt": "p", "chosen": "a"})", "rejected"},
      {R"({"prompt": "p", "chosen": 3, "rejected": "b"})", "chosen"},
      {R"({"prompt": "", "chosen": "a", "rejected": "b"})", "prompt"},
      {R"({"prompt": "p", "chosen": [], "rejected": "b"})", "chosen"},
      {R"({"prompt": "p", "chosen": "a", "rejected": "a"})", "rejected"},
      {R"({"prompt": "p", "chosen": "a", "rejected": "b", "strength": "much"})", "strength"},
      {R"({"prompt": "p", "chosen": "a", "rejected": "b", "round": -1})", "round"},
      {R"({"prompt": "p", "chosen": "a", "rejected": "b", "edited": "b"})", "edited"},
      {R"({"prompt": "p", "chosen": [{"role": "user"}], "rejected": "b"})", "chosen"},
      {R"({"prompt": "p", "responses": ["a", "b"], "ranking": [0, 2]})", "ranking[1]"},
      {R"({"prompt": "p", "responses": ["a", "b"], "ranking": [1, 1]})", "ranking[1]"},
      {R"({"prompt": "p", "responses": ["a", "b"], "ranking": [0]})", "ranking"},
      {R"({"prompt": "p", "responses": ["a", "a"], "ranking": [0, 1]})", "responses[1]"},
      {R"({"chosen": "same", "rejected": "different"})", "prompt"},
      {R"({"chosen": [{"role": "user", "content": "q"}], "rejected": "q"})", "rejected"},
  };
  for (const auto& [row, field] : cases) {
    const std::string e = error_of(row);
    EXPECT_NE(e.find("f.jsonl:7"), std::string::npos) << row << " -> " << e;
    EXPECT_NE(e.find("'" + field), std::string::npos) << row << " -> " << e;
  }
}

}  // namespace
}  // namespace posttrain::core
