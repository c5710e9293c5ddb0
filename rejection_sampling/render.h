// A prompt as the policy sees it: the stored content (a string = one user turn, or messages),
// preceded by a drawn system prompt when it has none of its own, rendered with the chat
// template and the assistant header opened. The selected sample later becomes [system] +
// prompt + response (Store::selected_samples), which SFT renders with the same template, so
// SFT trains on the tokens the policy saw followed by the response.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::rejection_sampling {

// The system prompt of the prompt at `position` (its index in the whole prompt list): one of
// `choices` drawn with a counter-based stream of `seed`, "" when `choices` is empty or the
// content has its own system message.
std::string draw_system_prompt(const std::vector<std::string>& choices, uint64_t seed,
                               int64_t position, const nlohmann::json& content);

// [system (when non-empty)] + content as chat messages.
std::vector<core::ChatMessage> prompt_messages(const nlohmann::json& content,
                                               const std::string& system_prompt);

// Token ids of the messages with the generation prompt (assistant header) appended.
std::vector<int64_t> render_prompt(const core::Tokenizer& tok, core::ChatFormat format,
                                   const std::vector<core::ChatMessage>& messages);

// The prompt as a prompt/completion row's "prompt" (`reward score`'s input): the content
// itself, or with a system prompt the message list [system] + content.
nlohmann::json prompt_with_system(const nlohmann::json& content, const std::string& system_prompt);

// Decoded bytes made valid UTF-8 (the store keeps only valid text): each invalid sequence
// becomes U+FFFD, as Python's errors="replace" does.
std::string valid_utf8(const std::string& bytes);

}  // namespace posttrain::rejection_sampling
