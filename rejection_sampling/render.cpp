// Prompt rendering for the policy (see render.h).
#include "rejection_sampling/render.h"

#include "common/error.h"
#include "common/utf8.h"
#include "core/generate/sampler.h"

namespace posttrain::rejection_sampling {

using nlohmann::json;

namespace {

bool has_system_message(const json& content) {
  if (!content.is_array()) return false;
  for (const auto& m : content) {
    if (m.is_object() && m.value("role", "") == "system") return true;
  }
  return false;
}

// Length of the valid UTF-8 sequence starting at s[i], 0 when it is invalid.
size_t valid_sequence_length(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  return is_valid_utf8(std::string_view(s).substr(i, n)) ? n : 0;
}

}  // namespace

std::string draw_system_prompt(const std::vector<std::string>& choices, uint64_t seed,
                               int64_t position, const json& content) {
  if (choices.empty() || has_system_message(content)) return "";
  // A stream apart from the samples' (they use sample_seed(sample_seed(seed, i), k)).
  const uint64_t draw = core::generate::sample_seed(seed ^ 0x53595354454d5031ull, position);
  return choices[draw % choices.size()];
}

std::vector<core::ChatMessage> prompt_messages(const json& content,
                                               const std::string& system_prompt) {
  std::vector<core::ChatMessage> messages;
  if (!system_prompt.empty()) messages.push_back({"system", system_prompt, -1});
  if (content.is_string()) {
    messages.push_back({"user", content.get<std::string>(), -1});
  } else {
    for (auto& m : core::parse_messages(content, Location{"", 0, "prompt"})) {
      messages.push_back(std::move(m));
    }
  }
  return messages;
}

std::vector<int64_t> render_prompt(const core::Tokenizer& tok, core::ChatFormat format,
                                   const std::vector<core::ChatMessage>& messages) {
  return core::render_chat(tok, messages, format, /*add_generation_prompt=*/true).ids;
}

json prompt_with_system(const json& content, const std::string& system_prompt) {
  if (system_prompt.empty()) return content;
  json out = json::array({{{"role", "system"}, {"content", system_prompt}}});
  if (content.is_string()) {
    out.push_back({{"role", "user"}, {"content", content}});
  } else {
    for (const auto& m : content) out.push_back(m);
  }
  return out;
}

std::string valid_utf8(const std::string& bytes) {
  if (is_valid_utf8(bytes)) return bytes;
  std::string out;
  out.reserve(bytes.size() + 8);
  for (size_t i = 0; i < bytes.size();) {
    const size_t n = valid_sequence_length(bytes, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(bytes, i, n);
      i += n;
    }
  }
  return out;
}

}  // namespace posttrain::rejection_sampling
