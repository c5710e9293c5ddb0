// Pair tokenisation: responses are what the template adds after the generation header; the DPO
// mask drops the template's formatting (Llama 3), the NLL mask is SFT's (end-of-turn kept);
// pre-tokenized rows are taken exactly; bad pairs name their field.
#include <gtest/gtest.h>

#include "core/tokenizer/chat_template.h"
#include "dpo/pair_tokens.h"

namespace posttrain::dpo {
namespace {

const Location kWhere{"pairs.jsonl", 3, ""};

std::vector<core::ChatMessage> user(const std::string& s) { return {{"user", s, -1}}; }
std::vector<core::ChatMessage> assistant(const std::string& s) { return {{"assistant", s, -1}}; }

std::string masked_text(const core::Tokenizer& tok, const std::vector<int64_t>& ids,
                        const std::vector<uint8_t>& mask) {
  std::vector<int64_t> kept;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (mask[i]) kept.push_back(ids[i]);
  }
  return tok.decode(kept);
}

TEST(DpoPairTokens, ChatResponsesFollowTheGenerationHeaderAndMaskFormatting) {
  auto tok = core::Tokenizer::byte_level();
  MaskOptions masks;
  auto p = tokenize_chat_pair(tok, core::ChatFormat::kLlama3, user("2+2?"), assistant("4"),
                              assistant("5"), masks, kWhere);
  EXPECT_EQ(tok.decode(p.prompt),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(tok.decode(p.chosen), "4<|eot_id|>");
  EXPECT_EQ(masked_text(tok, p.chosen, p.chosen_mask), "4");           // DPO: content only
  EXPECT_EQ(masked_text(tok, p.rejected, p.rejected_mask), "5");
  EXPECT_EQ(masked_text(tok, p.chosen, p.chosen_nll_mask), "4<|eot_id|>");  // SFT's targets
  EXPECT_EQ(p.chosen_count(), 1);
  EXPECT_EQ(p.row_tokens(), static_cast<int64_t>(p.prompt.size()) + 2 + 2 + 1);

  masks.mask_format_tokens = false;  // TRL's convention: the whole completion counts
  auto q = tokenize_chat_pair(tok, core::ChatFormat::kLlama3, user("2+2?"), assistant("4"),
                              assistant("5"), masks, kWhere);
  EXPECT_EQ(masked_text(tok, q.chosen, q.chosen_mask), "4<|eot_id|>");
  EXPECT_NE(p.content_key(), q.content_key());  // the masks are part of the cache key
}

TEST(DpoPairTokens, ConfiguredFormatTokensReplaceTheTemplateLabels) {
  auto tok = core::Tokenizer::byte_level();
  MaskOptions masks;
  masks.format_ids = format_token_ids(tok, {"<|eot_id|>", "a"}, "dpo.format_tokens");
  auto p = tokenize_chat_pair(tok, core::ChatFormat::kLlama3, user("q"), assistant("abc"),
                              assistant("xyz"), masks, kWhere);
  EXPECT_EQ(masked_text(tok, p.chosen, p.chosen_mask), "bc");
  EXPECT_THROW(format_token_ids(tok, {"<|not_a_token|>"}, "dpo.format_tokens"), UsageError);
}

TEST(DpoPairTokens, TextPairsGetBosAndEos) {
  auto tok = core::Tokenizer::byte_level();
  auto p = tokenize_text_pair(tok, "Q: ", "yes", "no", MaskOptions{}, kWhere);
  EXPECT_EQ(tok.decode(p.prompt), "<|begin_of_text|>Q: ");
  ASSERT_FALSE(tok.eos_ids().empty());
  EXPECT_EQ(p.chosen.back(), tok.eos_ids().front());
  EXPECT_EQ(p.chosen_count(), 4);  // y, e, s, EOS
}

TEST(DpoPairTokens, PretokenizedRowsAreTakenExactly) {
  auto p = pretokenized_pair({5, 6}, {7, 8, 9}, {7, 10}, 300, MaskOptions{}, kWhere);
  EXPECT_EQ(p.prompt, (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(p.chosen, (std::vector<int64_t>{7, 8, 9}));
  EXPECT_EQ(p.chosen_count(), 3);
  EXPECT_EQ(p.nll_count(), 3);
}

// The message of an InputError thrown by `fn`.
template <class F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(DpoPairTokens, BadPairsNameFileLineAndField) {
  auto tok = core::Tokenizer::byte_level();
  auto msg = error_of([&] {
    pretokenized_pair({5}, {7, 400}, {7}, 300, MaskOptions{}, kWhere);
  });
  EXPECT_NE(msg.find("pairs.jsonl:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("chosen_input_ids[1]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("outside the vocabulary"), std::string::npos) << msg;
  msg = error_of([&] { pretokenized_pair({5}, {7}, {}, 300, MaskOptions{}, kWhere); });
  EXPECT_NE(msg.find("rejected_input_ids"), std::string::npos) << msg;
  msg = error_of([&] { pretokenized_pair({}, {7}, {8}, 300, MaskOptions{}, kWhere); });
  EXPECT_NE(msg.find("prompt_input_ids"), std::string::npos) << msg;
  msg = error_of([&] {
    tokenize_chat_pair(tok, core::ChatFormat::kLlama3, user("q"), assistant("same"),
                       assistant("same"), MaskOptions{}, kWhere);
  });
  EXPECT_NE(msg.find("rejected"), std::string::npos) << msg;
  EXPECT_NE(msg.find("equals chosen"), std::string::npos) << msg;
  msg = error_of([&] {
    tokenize_chat_pair(tok, core::ChatFormat::kLlama3, user("q"), {}, assistant("a"),
                       MaskOptions{}, kWhere);
  });
  EXPECT_NE(msg.find("chosen"), std::string::npos) << msg;
  // An empty assistant turn has only formatting: nothing to score once it is masked.
  msg = error_of([&] {
    tokenize_chat_pair(tok, core::ChatFormat::kLlama3, user("q"), assistant("a"), assistant(""),
                       MaskOptions{}, kWhere);
  });
  EXPECT_NE(msg.find("rejected"), std::string::npos) << msg;
}

TEST(DpoPairTokens, TruncationKeepsThePromptEndAndTheResponseStart) {
  TruncationOptions o;
  o.max_length = 6;
  o.max_prompt_length = 3;
  auto p = pretokenized_pair({1, 2, 3, 4}, {5, 6, 7, 8}, {9}, 300, MaskOptions{}, kWhere);
  ASSERT_TRUE(truncate_pair(&p, o));
  EXPECT_EQ(p.prompt, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(p.chosen, (std::vector<int64_t>{5, 6, 7}));
  EXPECT_EQ(p.chosen_mask.size(), 3u);
  EXPECT_EQ(p.rejected, (std::vector<int64_t>{9}));
  auto q = pretokenized_pair({1, 2, 3, 4}, {5, 6, 7, 8}, {9}, 300, MaskOptions{}, kWhere);
  o.drop = true;
  EXPECT_FALSE(truncate_pair(&q, o));
  auto short_pair = pretokenized_pair({1}, {5}, {9}, 300, MaskOptions{}, kWhere);
  EXPECT_TRUE(truncate_pair(&short_pair, o));
}

}  // namespace
}  // namespace posttrain::dpo
