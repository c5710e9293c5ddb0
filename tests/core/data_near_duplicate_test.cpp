// The near-duplicate rule the reward and DPO stages drop pairs by.
#include "core/data/near_duplicate.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace posttrain::core {
namespace {

TEST(NearDuplicate, NormalizationFoldsCaseAndWhitespaceOnly) {
  EXPECT_EQ(normalize_for_comparison("  The  Answer\tIS\n\n 4. "), "the answer is 4.");
  EXPECT_EQ(normalize_for_comparison(""), "");
  // Digits, signs and non-ASCII bytes are kept: "-3" is not "3", "É" is not folded.
  EXPECT_EQ(normalize_for_comparison("x = -3"), "x = -3");
  EXPECT_EQ(normalize_for_comparison("\xc3\x89t\xc3\xa9"), "\xc3\x89t\xc3\xa9");
}

TEST(NearDuplicate, RulesDecide) {
  NearDuplicateOptions o;  // normalized, no similarity
  EXPECT_TRUE(near_duplicate("The answer is 4.", "the answer  is 4.\n", o));
  EXPECT_FALSE(near_duplicate("The answer is 4.", "The answer is 5.", o));
  EXPECT_FALSE(near_duplicate("x = 3", "x = -3", o));
  o.rule = NearDuplicateRule::kExact;
  EXPECT_TRUE(near_duplicate("abc", "abc", o));
  EXPECT_FALSE(near_duplicate("abc", "ABC", o));
  o.rule = NearDuplicateRule::kOff;
  EXPECT_FALSE(near_duplicate("abc", "abc", o));
  EXPECT_EQ(parse_near_duplicate_rule("normalized"), NearDuplicateRule::kNormalized);
  EXPECT_THROW(parse_near_duplicate_rule("fuzzy"), UsageError);
}

TEST(NearDuplicate, TrigramJaccardByHand) {
  // "a b c d" -> {abc, bcd}; "a b c e" -> {abc, bce}: 1 shared of 3 distinct = 1/3.
  EXPECT_DOUBLE_EQ(trigram_jaccard("a b c d", "a b c e"), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(trigram_jaccard("a b c d", "a b c d"), 1.0);
  // Under three words the whole text is one shingle.
  EXPECT_DOUBLE_EQ(trigram_jaccard("yes", "no"), 0.0);
  NearDuplicateOptions o;
  o.similarity = 0.3;
  EXPECT_TRUE(near_duplicate("A b c d", "a b c e", o));
  o.similarity = 0.5;
  EXPECT_FALSE(near_duplicate("A b c d", "a b c e", o));
}

TEST(NearDuplicate, TextOfMessages) {
  const auto m = nlohmann::json::parse(
      R"([{"role":"assistant","content":"Hi"},{"role":"tool","content":"42"}])");
  EXPECT_EQ(text_of(m), "assistant: Hi\ntool: 42");
  EXPECT_EQ(text_of(nlohmann::json("plain")), "plain");
}

}  // namespace
}  // namespace posttrain::core
