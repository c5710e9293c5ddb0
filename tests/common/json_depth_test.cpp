// The nesting bound every JSON reader applies: exactly the limit passes, one more is refused
// with the file, line and top-level field named; strings and comments do not count.
#include "common/json_depth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/jsonl.h"

namespace posttrain {
namespace {

// `depth` nested arrays around 0: "[[0]]" is depth 2.
std::string nested(int depth) { return std::string(depth, '[') + "0" + std::string(depth, ']'); }

std::string message_of(const std::string& text) {
  try {
    check_json_depth(text, Location{"in.json", 3, ""});
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(JsonDepth, LimitPassesOneMoreIsRefusedNamingTheField) {
  // {"x": <255 arrays>} is 1 + 255 = 256 levels: accepted, and the parsed depth agrees.
  std::string ok = "{\"a\": 1, \"x\": " + nested(kMaxJsonDepth - 1) + "}";
  EXPECT_EQ(message_of(ok), "");
  EXPECT_EQ(json_depth(parse_json(ok, Location{})), kMaxJsonDepth);
  std::string deep = "{\"a\": \"[[[[\", \"x\": " + nested(kMaxJsonDepth) + ", \"text\": \"a\"}";
  EXPECT_EQ(message_of(deep),
            "in.json:3: field 'x': JSON nested deeper than 256 levels (objects and arrays); "
            "refusing it");
}

TEST(JsonDepth, StringsEscapesAndCommentsDoNotCount) {
  // 300 brackets inside a string (with an escaped quote before them) and inside comments.
  std::string brackets(300, '[');
  EXPECT_EQ(message_of("{\"k\": \"\\\"" + brackets + "\"}"), "");
  EXPECT_EQ(message_of("{\"k\": 1 /* " + brackets + " */, \"j\": 2 // " + brackets + "\n}"), "");
}

TEST(JsonDepth, TopLevelArrayNamesTheIndex) {
  std::string text = "[1, \"[\", " + nested(kMaxJsonDepth) + "]";
  EXPECT_NE(message_of(text).find("field '[2]'"), std::string::npos) << message_of(text);
}

TEST(JsonDepth, JsonDepthOfAParsedValueIsIterative) {
  // 100,000 levels built in memory (not parsed): counting them must not recurse.
  nlohmann::json v = 0;
  for (int i = 0; i < 100000; ++i) {
    nlohmann::json wrap = nlohmann::json::array();
    wrap.push_back(std::move(v));
    v = std::move(wrap);
  }
  EXPECT_EQ(json_depth(v), 100000);
  EXPECT_EQ(json_depth(nlohmann::json::parse("{\"a\": [], \"b\": {\"c\": [1]}}")), 3);
  EXPECT_EQ(json_depth(nlohmann::json(5)), 0);
}

TEST(JsonDepth, JsonlReaderRefusesADeepRowByLineAndField) {
  // The row of the report: {"x": [[[...100000...]]], "text": "a"} on line 2.
  auto path = std::filesystem::temp_directory_path() /
              ("posttrain_json_depth_" + std::to_string(getpid()) + ".jsonl");
  {
    std::ofstream out(path);
    out << "{\"text\": \"fine\"}\n{\"x\": " << nested(100000) << ", \"text\": \"a\"}\n";
  }
  JsonlReader reader(path.string());
  nlohmann::json row;
  ASSERT_TRUE(reader.next(&row));
  try {
    reader.next(&row);
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.where().line, 2);
    EXPECT_EQ(e.where().field, "x");
    EXPECT_NE(std::string(e.what()).find(path.string() + ":2: field 'x'"), std::string::npos)
        << e.what();
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace posttrain
