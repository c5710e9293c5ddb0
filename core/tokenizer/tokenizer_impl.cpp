// See tokenizer_impl.h: parsing a tokenizer.json into the pipeline, and encode/decode.
#include "core/tokenizer/tokenizer_impl.h"

#include <algorithm>

#include "common/json_depth.h"
#include "common/jsonl.h"
#include "core/tokenizer/unicode.h"

namespace posttrain::core {

using nlohmann::json;

// ---- TokenTrie -----------------------------------------------------------------------------

void TokenTrie::insert(const std::string& s, int32_t value) {
  if (s.empty()) return;
  int32_t node = 0;
  for (unsigned char c : s) {
    int32_t next = -1;
    for (const auto& child : nodes_[node].children) {
      if (child.first == c) next = child.second;
    }
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_[node].children.push_back({c, next});
      nodes_.emplace_back();
    }
    node = next;
  }
  if (nodes_[node].value < 0) nodes_[node].value = value;
  first_byte_[static_cast<unsigned char>(s[0])] = true;
}

bool TokenTrie::find(const std::string& text, size_t from, size_t* begin, size_t* end,
                     int32_t* value) const {
  if (empty()) return false;
  for (size_t i = from; i < text.size(); ++i) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) continue;
    int32_t node = 0;
    int32_t best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < text.size(); ++j) {
      auto c = static_cast<unsigned char>(text[j]);
      int32_t next = -1;
      for (const auto& child : nodes_[node].children) {
        if (child.first == c) {
          next = child.second;
          break;
        }
      }
      if (next < 0) break;
      node = next;
      if (nodes_[node].value >= 0) {
        best = nodes_[node].value;
        best_end = j + 1;
      }
    }
    if (best >= 0) {
      *begin = i;
      *end = best_end;
      *value = best;
      return true;
    }
  }
  return false;
}

// ---- loading -------------------------------------------------------------------------------

namespace {

bool flag(const json& obj, const char* key) {
  return obj.contains(key) && obj[key].is_boolean() && obj[key].get<bool>();
}

}  // namespace

TokenizerImpl::TokenizerImpl(json document, const std::string& src)
    : doc(std::move(document)), source(src) {
  Location where{source, 0, ""};
  if (!doc.is_object()) throw InputError(where, "a tokenizer.json must be a JSON object");
  for (const char* key : {"truncation", "padding"}) {
    if (doc.contains(key) && !doc[key].is_null()) {
      throw InputError({source, 0, key}, std::string(key) + " is not supported (must be null)");
    }
  }
  // The normalizer and post-processor parsers recurse once per Sequence level.
  for (const char* key : {"normalizer", "post_processor"}) {
    if (doc.contains(key) && json_depth(doc[key]) > kMaxJsonDepth) {
      throw InputError({source, 0, key},
                       "nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
  }
  if (!doc.contains("model")) throw InputError({source, 0, "model"}, "missing model");
  model.load(doc["model"], where);
  vocab_size = model.size();
  parse_normalizer(doc.contains("normalizer") ? doc["normalizer"] : json(), "normalizer");
  parse_added_tokens(doc.contains("added_tokens") ? doc["added_tokens"] : json::array());
  pre_tokenizer_ =
      PreTokenizer::from_json(doc.contains("pre_tokenizer") ? doc["pre_tokenizer"] : json(), where);
  if (!pre_tokenizer_.ends_with_byte_level()) {
    throw InputError({source, 0, "pre_tokenizer"},
                     "only byte-level BPE is supported: the pre-tokenizer must end with a "
                     "ByteLevel step");
  }
  parse_post_processor(doc.contains("post_processor") ? doc["post_processor"] : json(),
                       "post_processor");
  parse_decoder(doc.contains("decoder") ? doc["decoder"] : json());

  // What each id decodes to: special tokens verbatim; any other token through the byte-level
  // decoder (a token with a character outside the byte map passes through as its UTF-8).
  decoded_.assign(vocab_size, std::string());
  special_.assign(vocab_size, 0);
  auto byte_decode = [](const std::string& token) {
    std::string bytes;
    size_t pos = 0;
    while (pos < token.size()) {
      int b = unicode::char_to_byte(unicode::next_utf8(token, &pos));
      if (b < 0) return token;
      bytes.push_back(static_cast<char>(b));
    }
    return bytes;
  };
  for (int64_t id = 0; id < model.size(); ++id) {
    if (model.has_id(id)) decoded_[id] = byte_decode(model.token(id));
  }
  for (const AddedToken& t : added) {
    special_[t.id] = t.special ? 1 : 0;
    // HF decodes a normalised added token from its normalised form.
    decoded_[t.id] =
        t.special ? t.content : byte_decode(t.normalized ? normalize(t.content) : t.content);
  }

  if (model.token_id("<|start_header_id|>") || added_by_content.count("<|start_header_id|>")) {
    detected_format = ChatFormat::kLlama3;
  } else if (added_by_content.count("<|im_start|>") || model.token_id("<|im_start|>")) {
    detected_format = ChatFormat::kChatML;
  }
}

void TokenizerImpl::parse_added_tokens(const json& list) {
  if (!list.is_array()) throw InputError({source, 0, "added_tokens"}, "expected a list");
  for (size_t i = 0; i < list.size(); ++i) {
    const json& t = list[i];
    Location here{source, 0, "added_tokens[" + std::to_string(i) + "]"};
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
        t["id"].get<int64_t>() < 0 || t["id"].get<int64_t>() > (1 << 30) ||
        !t.contains("content") || !t["content"].is_string() ||
        t["content"].get<std::string>().empty()) {
      throw InputError(here, "expected {\"id\": non-negative int, \"content\": non-empty string}");
    }
    if (flag(t, "single_word")) {
      throw InputError({here.file, 0, here.field + ".single_word"},
                       "single_word added tokens are not supported");
    }
    AddedToken token;
    token.id = t["id"].get<int64_t>();
    token.content = t["content"].get<std::string>();
    token.special = flag(t, "special");
    token.lstrip = flag(t, "lstrip");
    token.rstrip = flag(t, "rstrip");
    token.normalized = t.contains("normalized") ? flag(t, "normalized") : !token.special;
    if (!is_valid_utf8(token.content)) throw InputError(here, "content is not valid UTF-8");
    if (added_by_id.count(token.id)) {
      throw InputError(here, "id " + std::to_string(token.id) + " is used twice");
    }
    if (added_by_content.count(token.content)) continue;  // HF keeps the first
    added_by_id[token.id] = added.size();
    added_by_content[token.content] = added.size();
    vocab_size = std::max(vocab_size, token.id + 1);
    if (token.normalized) {
      normalized_trie_.insert(normalize(token.content), static_cast<int32_t>(added.size()));
    } else {
      raw_trie_.insert(token.content, static_cast<int32_t>(added.size()));
    }
    added.push_back(token);
  }
}

void TokenizerImpl::parse_normalizer(const json& spec, const std::string& path) {
  if (spec.is_null()) return;
  std::string type = spec.is_object() && spec.contains("type") && spec["type"].is_string()
                         ? spec["type"].get<std::string>()
                         : std::string();
  if (type == "NFC") {
    nfc_ = true;
  } else if (type == "Sequence" && spec.contains("normalizers") && spec["normalizers"].is_array()) {
    for (size_t i = 0; i < spec["normalizers"].size(); ++i) {
      parse_normalizer(spec["normalizers"][i], path + ".normalizers[" + std::to_string(i) + "]");
    }
  } else {
    throw InputError({source, 0, path + ".type"},
                     "unsupported normalizer " + (type.empty() ? spec.dump() : "'" + type + "'") +
                         " (supported: NFC, Sequence)");
  }
}

void TokenizerImpl::parse_post_processor(const json& spec, const std::string& path) {
  if (spec.is_null()) return;
  std::string type = spec.is_object() && spec.contains("type") && spec["type"].is_string()
                         ? spec["type"].get<std::string>()
                         : std::string();
  if (type == "ByteLevel") return;  // only changes offsets
  if (type == "Sequence" && spec.contains("processors") && spec["processors"].is_array()) {
    for (size_t i = 0; i < spec["processors"].size(); ++i) {
      parse_post_processor(spec["processors"][i], path + ".processors[" + std::to_string(i) + "]");
    }
    return;
  }
  if (type != "TemplateProcessing") {
    throw InputError({source, 0, path + ".type"},
                     "unsupported post-processor " +
                         (type.empty() ? spec.dump() : "'" + type + "'") +
                         " (supported: TemplateProcessing, ByteLevel, Sequence)");
  }
  Location here{source, 0, path + ".single"};
  if (!spec.contains("single") || !spec["single"].is_array()) {
    throw InputError(here, "expected a list");
  }
  bool seen_sequence = false;
  for (const json& item : spec["single"]) {
    if (item.is_object() && item.contains("Sequence")) {
      if (seen_sequence) throw InputError(here, "more than one Sequence");
      seen_sequence = true;
      continue;
    }
    if (!item.is_object() || !item.contains("SpecialToken") || !item["SpecialToken"].is_object() ||
        !item["SpecialToken"].contains("id") || !item["SpecialToken"]["id"].is_string()) {
      throw InputError(here, "unsupported item " + item.dump());
    }
    std::string name = item["SpecialToken"]["id"].get<std::string>();
    const json* entry = nullptr;
    if (spec.contains("special_tokens") && spec["special_tokens"].is_object() &&
        spec["special_tokens"].contains(name)) {
      entry = &spec["special_tokens"][name];
    }
    if (!entry || !entry->contains("ids") || !(*entry)["ids"].is_array()) {
      throw InputError({source, 0, path + ".special_tokens"}, "no ids for '" + name + "'");
    }
    for (const json& id : (*entry)["ids"]) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab_size) {
        throw InputError({source, 0, path + ".special_tokens." + name}, "id out of the vocabulary");
      }
      (seen_sequence ? suffix_ids : prefix_ids).push_back(id.get<int64_t>());
    }
  }
  if (!seen_sequence) throw InputError(here, "no {\"Sequence\": {\"id\": \"A\"}} item");
}

void TokenizerImpl::parse_decoder(const json& spec) {
  std::string type = spec.is_object() && spec.contains("type") && spec["type"].is_string()
                         ? spec["type"].get<std::string>()
                         : std::string();
  if (type == "ByteLevel") return;
  throw InputError({source, 0, "decoder"}, "unsupported decoder " +
                                               (type.empty() ? spec.dump() : "'" + type + "'") +
                                               " (only ByteLevel)");
}

// ---- encode / decode -----------------------------------------------------------------------

std::string TokenizerImpl::normalize(const std::string& text) const {
  return nfc_ ? unicode::nfc(text) : text;
}

template <typename Emit>
void TokenizerImpl::split_added(const std::string& text, const TokenTrie& trie, Emit emit) const {
  size_t done = 0, search = 0, begin = 0, end = 0;
  int32_t index = -1;
  while (trie.find(text, search, &begin, &end, &index)) {
    search = end;
    const AddedToken& t = added[index];
    if (t.lstrip) {  // swallow white space before, not already used
      size_t b = begin;
      while (b > done) {
        size_t p = b - 1;
        while (p > done && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
        size_t q = p;
        if (!unicode::is_white_space(unicode::next_utf8(text, &q))) break;
        b = p;
      }
      begin = b;
    }
    if (t.rstrip) {
      size_t e = end;
      while (e < text.size()) {
        size_t q = e;
        if (!unicode::is_white_space(unicode::next_utf8(text, &q))) break;
        e = q;
      }
      end = e;
      search = end;
    }
    if (begin < done) begin = done;
    if (done < begin) emit(done, begin, -1);
    emit(begin, end, index);
    done = end;
  }
  if (done < text.size()) emit(done, text.size(), -1);
}

void TokenizerImpl::encode_plain(const char* text, size_t n, size_t offset,
                                 std::vector<int64_t>* ids,
                                 std::vector<std::pair<size_t, size_t>>* spans) const {
  thread_local std::vector<Piece> pieces;
  thread_local std::string buffer;
  thread_local std::vector<size_t> ends;
  pieces.clear();
  pre_tokenizer_.run(text, n, &buffer, &pieces);
  for (const Piece& p : pieces) {
    size_t first = ids->size();
    ends.clear();
    model.encode_piece(buffer.data() + p.begin, p.size(), ids, spans ? &ends : nullptr);
    if (!spans) continue;
    const size_t shift = p.prefixed ? 1 : 0;
    size_t start = 0;
    for (size_t k = 0; k < ids->size() - first; ++k) {
      size_t b = start >= shift ? start - shift : 0;
      size_t e = ends[k] >= shift ? ends[k] - shift : 0;
      spans->push_back({offset + p.src_begin + b, offset + p.src_begin + e});
      start = ends[k];
    }
  }
}

void TokenizerImpl::encode(const std::string& text, bool add_special_tokens,
                           std::vector<int64_t>* ids,
                           std::vector<std::pair<size_t, size_t>>* spans) const {
  if (!is_valid_utf8(text)) throw InputError({}, "text is not valid UTF-8");
  if (add_special_tokens) {
    for (int64_t id : prefix_ids) {
      ids->push_back(id);
      if (spans) spans->push_back({0, 0});
    }
  }
  split_added(text, raw_trie_, [&](size_t begin, size_t end, int32_t index) {
    if (index >= 0) {
      ids->push_back(added[index].id);
      if (spans) spans->push_back({begin, end});
      return;
    }
    if (!nfc_ && normalized_trie_.empty()) {  // the common case: no copies
      encode_plain(text.data() + begin, end - begin, begin, ids, spans);
      return;
    }
    std::string segment = text.substr(begin, end - begin);
    std::string normal = normalize(segment);
    bool exact = normal == segment;
    std::vector<std::pair<size_t, size_t>> local;
    auto* target = spans ? &local : nullptr;
    split_added(normal, normalized_trie_, [&](size_t b, size_t e, int32_t k) {
      if (k >= 0) {
        ids->push_back(added[k].id);
        if (target) target->push_back({b, e});
      } else {
        encode_plain(normal.data() + b, e - b, b, ids, target);
      }
    });
    if (spans) {
      for (const auto& s : local) {
        spans->push_back(exact ? std::make_pair(begin + s.first, begin + s.second)
                               : std::make_pair(begin, end));
      }
    }
  });
  if (add_special_tokens) {
    for (int64_t id : suffix_ids) {
      ids->push_back(id);
      if (spans) spans->push_back({text.size(), text.size()});
    }
  }
}

std::string TokenizerImpl::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string bytes;
  for (size_t i = 0; i < ids.size(); ++i) {
    int64_t id = ids[i];
    if (id < 0 || id >= vocab_size) {
      throw InputError({"", 0, "input_ids[" + std::to_string(i) + "]"},
                       "token id " + std::to_string(id) + " is outside the vocabulary (size " +
                           std::to_string(vocab_size) + ")");
    }
    if (skip_special_tokens && special_[id]) continue;
    bytes += decoded_[id];
  }
  return unicode::utf8_lossy(bytes);
}

}  // namespace posttrain::core
