// Hostile tokenizer.json files: each is refused with an InputError naming the file and field,
// instead of overflowing the stack, allocating gigabytes or silently picking one of two tokens.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "common/error.h"
#include "common/json_depth.h"
#include "core/tokenizer/pre_tokenizer.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::core {
namespace {

using nlohmann::json;

const std::string kLlama3 = std::string(POSTTRAIN_FIXTURES) + "/tokenizer/llama3.json";

json llama3() {
  std::ifstream in(kLlama3);
  std::stringstream s;
  s << in.rdbuf();
  return json::parse(s.str());
}

// Writes `text` to a temp tokenizer.json, loads it, and returns the error message ("" = loaded).
std::string load_error(const std::string& text) {
  const std::string path = "/tmp/posttrain_hostile_tok_" + std::to_string(getpid()) + ".json";
  std::ofstream(path) << text;
  std::string message;
  try {
    Tokenizer::from_file(path);
  } catch (const InputError& e) {
    message = e.what();
  }
  std::remove(path.c_str());
  return message;
}

TEST(TokenizerHostile, DeeplyNestedPreTokenizerSequencesAreRefused) {
  // 20,000 Sequences around the real pre-tokenizer, written as text (building it as a json
  // value and dumping it would itself recurse 40,000 deep).
  json doc = llama3();
  std::string inner = doc["pre_tokenizer"].dump();
  doc["pre_tokenizer"] = "@@PRE@@";
  std::string text = doc.dump();
  std::string nested;
  for (int i = 0; i < 20000; ++i) nested += "{\"type\": \"Sequence\", \"pretokenizers\": [";
  nested += inner;
  for (int i = 0; i < 20000; ++i) nested += "]}";
  text.replace(text.find("\"@@PRE@@\""), 9, nested);
  std::string err = load_error(text);
  EXPECT_NE(err.find("field 'pre_tokenizer': JSON nested deeper than 256 levels"),
            std::string::npos)
      << err.substr(0, 300);
  // A spec built in code, past the file reader: the pre-tokenizer parser bounds it too.
  json spec = json::parse(inner);
  for (int i = 0; i < 200; ++i) {
    spec = json{{"type", "Sequence"}, {"pretokenizers", json::array({std::move(spec)})}};
  }
  try {
    PreTokenizer::from_json(spec, Location{"built", 0, ""});
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("nested deeper than 256"), std::string::npos)
        << e.what();
  }
  // 100 levels (200 JSON levels) are still read.
  json ok = llama3(), pre = ok["pre_tokenizer"];
  for (int i = 0; i < 100; ++i) {
    pre = json{{"type", "Sequence"}, {"pretokenizers", json::array({std::move(pre)})}};
  }
  ok["pre_tokenizer"] = pre;
  EXPECT_EQ(load_error(ok.dump()), "");
}

TEST(TokenizerHostile, DuplicateAddedTokenContentIsRefused) {
  json doc = llama3();
  json twin = doc["added_tokens"][1];  // <|end_of_text|>, id 902
  twin["id"] = 909;
  doc["added_tokens"].push_back(twin);
  std::string err = load_error(doc.dump());
  EXPECT_NE(err.find("field 'added_tokens[8].content': content '<|end_of_text|>' is also added "
                     "token id 902"),
            std::string::npos)
      << err;
}

TEST(TokenizerHostile, IdsFarPastTheVocabularyAreRefusedBeforeAllocating) {
  // 901 model tokens + 8 added ones (ids 0..908); the limit is 2 * 909 + 1024 = 2842. Ids of 1e8
  // or 1e9 would size per-id tables of gigabytes.
  for (int64_t id : {int64_t{100000000}, int64_t{1000000000}}) {
    json doc = llama3();
    doc["added_tokens"][7]["id"] = id;
    std::string err = load_error(doc.dump());
    EXPECT_NE(err.find("field 'added_tokens[7].id': id " + std::to_string(id) +
                       " is far past the model's 901 tokens plus 8 added tokens (ids must be "
                       "below 2842)"),
              std::string::npos)
        << err;
    json vocab_doc = llama3();
    vocab_doc["model"]["vocab"]["zzzz-new"] = id;
    err = load_error(vocab_doc.dump());
    EXPECT_NE(err.find("is far past the 902 tokens of the vocabulary"), std::string::npos) << err;
  }
}

}  // namespace
}  // namespace posttrain::core
