// See tokenizer.h. Loading (file, model folder, built-in byte-level), token lookups, the special
// ids a trainer needs (BOS, EOS set, PAD) and saving a folder transformers can load.
#include "core/tokenizer/tokenizer.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"
#include "common/json_depth.h"
#include "common/sha256.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer_impl.h"
#include "core/tokenizer/unicode.h"

namespace posttrain::core {

using nlohmann::json;

namespace {

// POSIX file checks (LibTorch exports its own std::filesystem symbols, so we keep clear of it).
bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void make_directories(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string prefix = dir.substr(0, pos);
    struct stat st;
    if (::stat(prefix.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode))
        throw IoError("cannot create " + dir + ": " + prefix + " is a file");
      continue;
    }
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      throw IoError("cannot create " + dir + ": " + std::strerror(errno));
    }
  }
}

const char* const kLlama3Specials[] = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eot_id|>",        "<|eom_id|>",      "<|python_tag|>",      "<|finetune_right_pad_id|>"};

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open " + path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw IoError("cannot read " + path);
  const std::string text = buffer.str();
  check_json_depth(text, {path, 0, ""});
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw InputError({path, 0, ""}, std::string("malformed JSON: ") + e.what());
  }
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw IoError("cannot write " + path);
  out << text;
  out.close();
  if (!out) throw IoError("failed writing " + path);
}

// A token named in tokenizer_config.json: a string, {"content": ...}, or null/absent.
std::optional<std::string> config_token(const json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

std::optional<ChatFormat> format_from_template(const json& config) {
  if (!config.is_object() || !config.contains("chat_template")) return std::nullopt;
  const json& t = config["chat_template"];
  std::string text;
  if (t.is_string()) {
    text = t.get<std::string>();
  } else if (t.is_array()) {
    for (const json& item : t) {
      if (item.is_object() && item.contains("template") && item["template"].is_string()) {
        text = item["template"].get<std::string>();
        if (item.contains("name") && item["name"] == "default") break;
      }
    }
  }
  if (text.find("<|start_header_id|>") != std::string::npos) return ChatFormat::kLlama3;
  if (text.find("<|im_start|>") != std::string::npos) return ChatFormat::kChatML;
  return std::nullopt;
}

}  // namespace

ChatFormat parse_chat_format(const std::string& name) {
  if (name == "llama3") return ChatFormat::kLlama3;
  if (name == "chatml") return ChatFormat::kChatML;
  throw UsageError("unknown chat template '" + name + "' (expected llama3 or chatml)");
}

std::string chat_format_name(ChatFormat format) {
  return format == ChatFormat::kLlama3 ? "llama3" : "chatml";
}

Tokenizer::Tokenizer(std::shared_ptr<const TokenizerImpl> impl, ChatFormat format)
    : impl_(std::move(impl)), chat_format_(format) {}

Tokenizer Tokenizer::from_file(const std::string& tokenizer_json_path) {
  auto impl =
      std::make_shared<TokenizerImpl>(read_json_file(tokenizer_json_path), tokenizer_json_path);
  ChatFormat format = impl->detected_format;
  return Tokenizer(std::move(impl), format);
}

Tokenizer Tokenizer::load_dir(const std::string& dir) {
  if (is_file(dir)) return from_file(dir);
  const std::string json_path = dir + "/tokenizer.json";
  if (!is_file(json_path)) {
    throw IoError("no tokenizer.json in " + dir +
                  " (only tokenizer.json tokenizers are supported)");
  }
  auto impl = std::make_shared<TokenizerImpl>(read_json_file(json_path), json_path);
  const std::string config_path = dir + "/tokenizer_config.json";
  if (is_file(config_path)) {
    impl->config = read_json_file(config_path);
    if (!impl->config.is_object()) {
      throw InputError({config_path, 0, ""}, "expected a JSON object");
    }
    if (auto f = format_from_template(impl->config)) impl->detected_format = *f;
  }
  ChatFormat format = impl->detected_format;
  return Tokenizer(std::move(impl), format);
}

Tokenizer Tokenizer::byte_level() {
  static const std::shared_ptr<const TokenizerImpl> shared = [] {
    json vocab = json::object();
    const auto& map = unicode::byte_to_char();
    for (int b = 0; b < 256; ++b) {
      std::string s;
      unicode::append_utf8(map[b], &s);
      vocab[s] = b;
    }
    json added = json::array();
    int id = 256;
    for (const char* name : kLlama3Specials) {
      added.push_back({{"id", id++},
                       {"content", name},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", true}});
    }
    const std::string bos = kLlama3Specials[0];
    json seq_a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
    json seq_b = {{"Sequence", {{"id", "B"}, {"type_id", 1}}}};
    json doc = {{"version", "1.0"},
                {"truncation", nullptr},
                {"padding", nullptr},
                {"added_tokens", added},
                {"normalizer", nullptr},
                {"pre_tokenizer",
                 {{"type", "ByteLevel"},
                  {"add_prefix_space", false},
                  {"trim_offsets", true},
                  {"use_regex", true}}},
                {"post_processor",
                 {{"type", "TemplateProcessing"},
                  {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, seq_a}},
                  {"pair",
                   {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                    seq_a,
                    {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                    seq_b}},
                  {"special_tokens", {{bos, {{"id", bos}, {"ids", {256}}, {"tokens", {bos}}}}}}}},
                {"decoder",
                 {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}}},
                {"model",
                 {{"type", "BPE"},
                  {"dropout", nullptr},
                  {"unk_token", nullptr},
                  {"continuing_subword_prefix", nullptr},
                  {"end_of_word_suffix", nullptr},
                  {"fuse_unk", false},
                  {"byte_fallback", false},
                  {"ignore_merges", false},
                  {"vocab", vocab},
                  {"merges", json::array()}}}};
    auto impl = std::make_shared<TokenizerImpl>(doc, "<built-in byte-level tokenizer>");
    impl->config = {{"bos_token", "<|begin_of_text|>"},
                    {"eos_token", "<|eot_id|>"},
                    {"pad_token", "<|finetune_right_pad_id|>"}};
    return std::shared_ptr<const TokenizerImpl>(impl);
  }();
  return Tokenizer(shared, ChatFormat::kLlama3);
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  std::vector<int64_t> ids;
  impl_->encode(text, add_special_tokens, &ids, nullptr);
  return ids;
}

std::vector<int64_t> Tokenizer::encode_with_offsets(
    const std::string& text, bool add_special_tokens,
    std::vector<std::pair<size_t, size_t>>* offsets) const {
  std::vector<int64_t> ids;
  offsets->clear();
  impl_->encode(text, add_special_tokens, &ids, offsets);
  return ids;
}

std::string Tokenizer::normalize(const std::string& text) const { return impl_->normalize(text); }

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  return impl_->decode(ids, skip_special_tokens);
}

int64_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int64_t> Tokenizer::token_id(const std::string& token) const {
  auto it = impl_->added_by_content.find(token);
  if (it != impl_->added_by_content.end()) return impl_->added[it->second].id;
  return impl_->model.token_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int64_t id) const {
  auto it = impl_->added_by_id.find(id);
  if (it != impl_->added_by_id.end()) return impl_->added[it->second].content;
  if (impl_->model.has_id(id)) return impl_->model.token(id);
  return std::nullopt;
}

bool Tokenizer::is_special(int64_t id) const {
  auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

std::optional<int64_t> Tokenizer::bos_id() const {
  const json& config = impl_->config;
  if (config.is_object() && config.contains("bos_token")) {
    auto name = config_token(config, "bos_token");
    return name ? token_id(*name) : std::nullopt;
  }
  if (!impl_->prefix_ids.empty()) return impl_->prefix_ids.front();
  return token_id("<|begin_of_text|>");
}

std::vector<int64_t> Tokenizer::eos_ids() const {
  std::vector<int64_t> out;
  auto add = [&](const std::optional<std::string>& name) {
    if (!name) return;
    auto id = token_id(*name);
    if (id && std::find(out.begin(), out.end(), *id) == out.end()) out.push_back(*id);
  };
  add(config_token(impl_->config, "eos_token"));
  add(std::string("<|end_of_text|>"));
  add(std::string("<|endoftext|>"));
  if (chat_format_ == ChatFormat::kLlama3) {
    add(std::string("<|eot_id|>"));
    add(std::string("<|eom_id|>"));
  } else {
    add(std::string("<|im_end|>"));
  }
  return out;
}

std::optional<int64_t> Tokenizer::pad_id() const {
  const json& config = impl_->config;
  if (config.is_object() && config.contains("pad_token")) {
    auto name = config_token(config, "pad_token");
    if (name) return token_id(*name);
  }
  return token_id("<|finetune_right_pad_id|>");
}

void Tokenizer::save_dir(const std::string& dir) const {
  make_directories(dir);
  write_text_file(dir + "/tokenizer.json", impl_->doc.dump(2) + "\n");

  json config = impl_->config.is_object() ? impl_->config : json::object();
  if (!config.contains("tokenizer_class")) config["tokenizer_class"] = "PreTrainedTokenizerFast";
  auto bos = bos_id();
  config["bos_token"] = bos ? json(*id_to_token(*bos)) : json(nullptr);
  if (!config_token(config, "eos_token")) {
    auto eos = eos_ids();
    config["eos_token"] = eos.empty() ? json(nullptr) : json(*id_to_token(eos.front()));
  }
  auto pad = pad_id();
  if (pad) config["pad_token"] = *id_to_token(*pad);
  config["chat_template"] = jinja_chat_template(chat_format_);
  if (!config.contains("clean_up_tokenization_spaces")) {
    config["clean_up_tokenization_spaces"] = false;
  }
  if (!config.contains("model_input_names")) {
    config["model_input_names"] = {"input_ids", "attention_mask"};
  }
  write_text_file(dir + "/tokenizer_config.json", config.dump(2) + "\n");
}

std::string Tokenizer::fingerprint() const {
  return sha256_hex(impl_->doc.dump() + "\n" + chat_format_name(chat_format_));
}

}  // namespace posttrain::core
