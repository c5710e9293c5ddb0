// Pair tokenisation and masks (see pair_tokens.h).
#include "dpo/pair_tokens.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "common/sha256.h"

namespace posttrain::dpo {
namespace {

Location at_field(const Location& where, const std::string& field) {
  Location at = where;
  at.field = where.field.empty() ? field : where.field + "." + field;
  return at;
}

int64_t count(const std::vector<uint8_t>& mask) {
  return std::count(mask.begin(), mask.end(), uint8_t{1});
}

// Masks tokens of `ids` listed in `format_ids` (when given).
void apply_format_ids(const std::vector<int64_t>& ids, std::vector<uint8_t>* mask,
                      const MaskOptions& masks) {
  if (!masks.format_ids) return;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (masks.format_ids->count(ids[i])) (*mask)[i] = 0;
  }
}

// Checks what every form shares: a prompt, responses with a counted token, chosen != rejected.
// `suffix` follows the field names ("_input_ids" for pre-tokenized rows).
void check_pair(const TokenizedPair& p, const Location& where, const std::string& suffix = "") {
  const Location prompt = at_field(where, "prompt" + suffix);
  const Location chosen = at_field(where, "chosen" + suffix);
  const Location rejected = at_field(where, "rejected" + suffix);
  if (p.prompt.empty()) {
    throw InputError(prompt, "empty prompt: the first response token needs a token before it");
  }
  if (p.chosen.empty()) throw InputError(chosen, "empty response");
  if (p.rejected.empty()) throw InputError(rejected, "empty response");
  if (p.chosen == p.rejected) throw InputError(rejected, "equals chosen: the pair prefers nothing");
  if (p.chosen_count() == 0) throw InputError(chosen, "no token left to score after masking");
  if (p.rejected_count() == 0) throw InputError(rejected, "no token left to score after masking");
}

// One response rendered after the prompt: its tokens and both masks.
struct Response {
  std::vector<int64_t> ids;
  std::vector<uint8_t> mask, nll_mask;
};

Response render_response(const core::Tokenizer& tok, core::ChatFormat format,
                         const std::vector<core::ChatMessage>& prompt,
                         const std::vector<int64_t>& prompt_ids,
                         const std::vector<core::ChatMessage>& response, const MaskOptions& masks,
                         const Location& where) {
  if (response.empty()) throw InputError(where, "empty response");
  std::vector<core::ChatMessage> all = prompt;
  all.insert(all.end(), response.begin(), response.end());
  const core::RenderedChat full = core::render_chat(tok, all, format, false);
  const size_t P = prompt_ids.size();
  if (full.ids.size() <= P || !std::equal(prompt_ids.begin(), prompt_ids.end(), full.ids.begin())) {
    // The template renders a response's own header differently from the generation prompt
    // (e.g. a first response message that is not the assistant's).
    throw InputError(where, "the rendered conversation does not start with the prompt's "
                            "generation header (the response must start with an assistant turn)");
  }
  Response r;
  r.ids.assign(full.ids.begin() + P, full.ids.end());
  const auto sft = full.sft_target_mask();
  r.nll_mask.assign(sft.begin() + P, sft.end());
  r.mask.resize(r.ids.size());
  for (size_t i = 0; i < r.ids.size(); ++i) {
    const auto& l = full.labels[P + i];
    r.mask[i] = masks.format_ids || !masks.mask_format_tokens || l.is_content ? 1 : 0;
  }
  apply_format_ids(r.ids, &r.mask, masks);
  return r;
}

}  // namespace

int64_t TokenizedPair::chosen_count() const { return count(chosen_mask); }
int64_t TokenizedPair::rejected_count() const { return count(rejected_mask); }
int64_t TokenizedPair::nll_count() const { return count(chosen_nll_mask); }
int64_t TokenizedPair::row_tokens() const {
  return static_cast<int64_t>(prompt.size() + chosen.size() + rejected.size()) + 1;
}

std::string TokenizedPair::content_key() const {
  const nlohmann::json j = {prompt, chosen, rejected, chosen_mask, rejected_mask};
  return sha256_hex(j.dump());
}

std::set<int64_t> format_token_ids(const core::Tokenizer& tok,
                                   const std::vector<std::string>& names,
                                   const std::string& field) {
  std::set<int64_t> ids;
  for (const auto& n : names) {
    auto id = tok.token_id(n);
    if (!id) throw UsageError(field + ": '" + n + "' is not a token of the tokenizer");
    ids.insert(*id);
  }
  return ids;
}

TokenizedPair tokenize_chat_pair(const core::Tokenizer& tok, core::ChatFormat format,
                                 const std::vector<core::ChatMessage>& prompt,
                                 const std::vector<core::ChatMessage>& chosen,
                                 const std::vector<core::ChatMessage>& rejected,
                                 const MaskOptions& masks, const Location& where) {
  if (prompt.empty()) throw InputError(at_field(where, "prompt"), "empty prompt");
  TokenizedPair p;
  p.where = where;
  p.prompt = core::render_chat(tok, prompt, format, /*add_generation_prompt=*/true).ids;
  Response c = render_response(tok, format, prompt, p.prompt, chosen, masks,
                               at_field(where, "chosen"));
  Response r = render_response(tok, format, prompt, p.prompt, rejected, masks,
                               at_field(where, "rejected"));
  p.chosen = std::move(c.ids);
  p.chosen_mask = std::move(c.mask);
  p.chosen_nll_mask = std::move(c.nll_mask);
  p.rejected = std::move(r.ids);
  p.rejected_mask = std::move(r.mask);
  check_pair(p, where);
  return p;
}

TokenizedPair tokenize_text_pair(const core::Tokenizer& tok, const std::string& prompt,
                                 const std::string& chosen, const std::string& rejected,
                                 const MaskOptions& masks, const Location& where) {
  if (chosen.empty()) throw InputError(at_field(where, "chosen"), "empty response");
  if (rejected.empty()) throw InputError(at_field(where, "rejected"), "empty response");
  TokenizedPair p;
  p.where = where;
  p.prompt = tok.encode(prompt, true);
  const auto eos = tok.eos_ids();
  auto response = [&](const std::string& text) {
    auto ids = tok.encode(text, false);
    if (!eos.empty()) ids.push_back(eos.front());
    return ids;
  };
  p.chosen = response(chosen);
  p.rejected = response(rejected);
  p.chosen_mask.assign(p.chosen.size(), 1);
  p.rejected_mask.assign(p.rejected.size(), 1);
  apply_format_ids(p.chosen, &p.chosen_mask, masks);
  apply_format_ids(p.rejected, &p.rejected_mask, masks);
  p.chosen_nll_mask.assign(p.chosen.size(), 1);
  check_pair(p, where);
  return p;
}

TokenizedPair pretokenized_pair(std::vector<int64_t> prompt, std::vector<int64_t> chosen,
                                std::vector<int64_t> rejected, int64_t vocab_size,
                                const MaskOptions& masks, const Location& where) {
  auto check_ids = [&](const std::vector<int64_t>& ids, const char* field) {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= vocab_size) {
        throw InputError(at_field(where, std::string(field) + "[" + std::to_string(i) + "]"),
                         "token id " + std::to_string(ids[i]) + " outside the vocabulary [0, " +
                             std::to_string(vocab_size) + ")");
      }
    }
  };
  check_ids(prompt, "prompt_input_ids");
  check_ids(chosen, "chosen_input_ids");
  check_ids(rejected, "rejected_input_ids");
  TokenizedPair p;
  p.where = where;
  p.prompt = std::move(prompt);
  p.chosen = std::move(chosen);
  p.rejected = std::move(rejected);
  p.chosen_mask.assign(p.chosen.size(), 1);
  p.rejected_mask.assign(p.rejected.size(), 1);
  apply_format_ids(p.chosen, &p.chosen_mask, masks);
  apply_format_ids(p.rejected, &p.rejected_mask, masks);
  p.chosen_nll_mask.assign(p.chosen.size(), 1);
  check_pair(p, where, "_input_ids");
  return p;
}

bool truncate_pair(TokenizedPair* p, const TruncationOptions& o) {
  const auto P = static_cast<int64_t>(p->prompt.size());
  const bool overlong = P > o.max_prompt_length ||
                        P + static_cast<int64_t>(p->chosen.size()) > o.max_length ||
                        P + static_cast<int64_t>(p->rejected.size()) > o.max_length;
  if (!overlong) return true;
  if (o.drop) return false;
  if (P > o.max_prompt_length) {
    p->prompt.erase(p->prompt.begin(), p->prompt.end() - o.max_prompt_length);
  }
  const auto keep = o.max_length - static_cast<int64_t>(p->prompt.size());
  if (keep <= 0) return false;
  auto cut = [keep](auto* v) {
    if (static_cast<int64_t>(v->size()) > keep) v->resize(keep);
  };
  cut(&p->chosen), cut(&p->chosen_mask), cut(&p->chosen_nll_mask);
  cut(&p->rejected), cut(&p->rejected_mask);
  return p->chosen_count() > 0 && p->rejected_count() > 0 && p->chosen != p->rejected;
}

}  // namespace posttrain::dpo
