// When two responses to one prompt are "the same answer": a preference pair between them teaches
// nothing (and a reward model's loss on it is pure noise), so the reward and DPO stages drop such
// pairs and count them. The default rule is equality after normalisation (lower-case ASCII
// letters, every run of whitespace one space, no leading/trailing whitespace), which catches
// re-samples that differ in spacing or case only. With a similarity threshold, two texts whose
// word-trigram sets have a Jaccard similarity at or above it also count (off by default).
// Chat-message responses are compared on text_of() (roles and contents joined).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace posttrain::core {

enum class NearDuplicateRule {
  kOff,         // never drop
  kExact,       // byte-identical text only
  kNormalized,  // equal after normalize_for_comparison (the default)
};
// "off" | "exact" | "normalized"; UsageError otherwise.
NearDuplicateRule parse_near_duplicate_rule(const std::string& name);

struct NearDuplicateOptions {
  NearDuplicateRule rule = NearDuplicateRule::kNormalized;
  // > 0: also a near duplicate when the word-trigram Jaccard similarity of the normalised texts
  // is >= this (texts under three words compare their word sets). 0 = off.
  double similarity = 0.0;
};

// Lower-cases ASCII letters, turns every run of whitespace into one space, trims both ends.
// Other bytes (UTF-8 included, digits, punctuation: "-3" must stay unlike "3") are kept.
std::string normalize_for_comparison(std::string_view text);

// Word-trigram Jaccard similarity in [0, 1] of two texts (as they are; normalise first).
double trigram_jaccard(std::string_view a, std::string_view b);

// Whether `a` and `b` are the same answer under `options`.
bool near_duplicate(std::string_view a, std::string_view b, const NearDuplicateOptions& options);

// The comparable text of a content value: a string as is; a message list as
// "role: content" lines (tool calls as their JSON).
std::string text_of(const nlohmann::json& content);

}  // namespace posttrain::core
