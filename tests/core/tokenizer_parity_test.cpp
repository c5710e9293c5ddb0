// Parity of our tokenizer with Hugging Face `tokenizers` on the tokenizer.json files that
// tests/fixtures/make_tokenizer_fixtures.py trained (Llama 3 split + ignore_merges, GPT-2
// ByteLevel regex + Digits, NFC + Qwen split, every Split behaviour + BOS/EOS) over multilingual
// text with special tokens, plus the built-in byte-level tokenizer, broken-UTF-8 decoding and
// refused tokenizer.json inputs.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "common/error.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/core/tokenizer_fixtures.h"

namespace posttrain::core {
namespace {

using nlohmann::json;

using testing_fixtures::expected;
using testing_fixtures::kDir;

void check_cases(const Tokenizer& tok, const json& cases, const std::string& name) {
  ASSERT_FALSE(cases.empty());
  for (const json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE(name + ": " + json(text).dump());
    auto ids = tok.encode(text, true);
    EXPECT_EQ(ids, c["ids"].get<std::vector<int64_t>>());
    EXPECT_EQ(tok.encode(text, false), c["ids_no_special"].get<std::vector<int64_t>>());
    EXPECT_EQ(tok.decode(ids, false), c["decoded"].get<std::string>());
    EXPECT_EQ(tok.decode(ids, true), c["decoded_skip_special"].get<std::string>());
  }
}

class TokenizerParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerParity, EncodeAndDecodeMatchHuggingFace) {
  const json& spec = expected()["tokenizers"][GetParam()];
  Tokenizer tok = Tokenizer::from_file(kDir + spec["file"].get<std::string>());
  EXPECT_EQ(tok.vocab_size(), spec["vocab_size"].get<int64_t>());
  check_cases(tok, spec["cases"], GetParam());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerParity,
                         ::testing::Values("llama3", "gpt2_digits", "qwen_nfc", "split_behaviors"));

TEST(TokenizerParity, ByteLevelBuiltInMatchesTheSameTokenizerBuiltInPython) {
  Tokenizer tok = Tokenizer::byte_level();
  const json& spec = expected()["byte_level"];
  EXPECT_EQ(tok.vocab_size(), spec["vocab_size"].get<int64_t>());
  check_cases(tok, spec["cases"], "byte_level");
  for (const json& d : spec["decodes"]) {
    EXPECT_EQ(tok.decode(d["ids"].get<std::vector<int64_t>>()), d["decoded"].get<std::string>())
        << d["ids"].dump();
  }
}

TEST(TokenizerParity, ByteLevelBuiltInHasLlama3SpecialTokens) {
  Tokenizer tok = Tokenizer::byte_level();
  EXPECT_EQ(tok.vocab_size(), 264);
  EXPECT_EQ(tok.token_id("<|begin_of_text|>"), 256);
  EXPECT_EQ(tok.token_id("<|eot_id|>"), 260);
  EXPECT_EQ(tok.token_id("<|python_tag|>"), 262);
  EXPECT_EQ(tok.bos_id(), 256);
  EXPECT_EQ(tok.pad_id(), 263);
  EXPECT_EQ(tok.eos_ids(), (std::vector<int64_t>{260, 257, 261}));
  EXPECT_TRUE(tok.is_special(260));
  EXPECT_FALSE(tok.is_special(65));
  EXPECT_EQ(tok.chat_format(), ChatFormat::kLlama3);
  // Hand-derived: BOS, then one id per UTF-8 byte.
  EXPECT_EQ(tok.encode("hé"), (std::vector<int64_t>{256, 0x68, 0xC3, 0xA9}));
}

TEST(TokenizerParity, ChatFormatComesFromTheSpecialTokens) {
  EXPECT_EQ(Tokenizer::from_file(kDir + "llama3.json").chat_format(), ChatFormat::kLlama3);
  EXPECT_EQ(Tokenizer::from_file(kDir + "qwen_nfc.json").chat_format(), ChatFormat::kChatML);
  EXPECT_EQ(parse_chat_format("chatml"), ChatFormat::kChatML);
  EXPECT_THROW(parse_chat_format("vicuna"), UsageError);
}

TEST(TokenizerBadInput, EachRefusedFileNamesTheFileAndTheField) {
  for (const json& bad : expected()["bad"]) {
    const std::string file = kDir + "bad/" + bad["file"].get<std::string>();
    const std::string expect = bad["expect"].get<std::string>();
    SCOPED_TRACE(file);
    try {
      Tokenizer::from_file(file);
      ADD_FAILURE() << "loaded without error";
    } catch (const InputError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(file), std::string::npos) << what;
      EXPECT_NE(what.find(expect), std::string::npos) << what;
    }
  }
}

TEST(TokenizerBadInput, MissingFileIsAnIoError) {
  EXPECT_THROW(Tokenizer::from_file(kDir + "no_such_file.json"), IoError);
  EXPECT_THROW(Tokenizer::load_dir(kDir + "bad_dir_that_does_not_exist"), IoError);
}

}  // namespace
}  // namespace posttrain::core
