// `posttrain tokenize`: text → ids and ids → text with a model's tokenizer, one string on the
// command line or a JSONL file line by line; chat `messages` are rendered with the chat template.
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "app/command.h"
#include "app/options.h"
#include "common/error.h"
#include "common/jsonl.h"
#include "core/data/row_checks.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::app {
namespace {

using nlohmann::json;

const char* kUsage =
    "usage: posttrain tokenize --tokenizer PATH (--text STR | --input IN.jsonl --output "
    "OUT.jsonl)\n"
    "PATH is a tokenizer.json, a model folder holding one, or `byte-level` (the built-in\n"
    "tokenizer of tiny models). --text prints {\"text\", \"input_ids\"} as one JSON line. With\n"
    "--input, each line is copied to the output with: `input_ids` added when it has `text`\n"
    "(a line with both keeps its input_ids, and its text must encode to them, else an error)\n"
    "(BOS as the tokenizer's post-processor says, unless --no-special-tokens); `text` added when\n"
    "it has `input_ids`; `input_ids` and `sft_target_mask` (1 on the tokens SFT trains on) added\n"
    "when it has `messages` (a list of {role, content, weight?}), rendered with the tokenizer's\n"
    "chat template or --chat-template.\n"
    "example: posttrain tokenize --tokenizer ckpt/ --input prompts.jsonl --output ids.jsonl";

core::Tokenizer load_tokenizer(const std::string& path) {
  if (path == "byte-level") return core::Tokenizer::byte_level();
  return core::Tokenizer::load_dir(path);
}

struct Settings {
  bool add_special = true;
  bool skip_special = false;
  bool generation_prompt = false;
};

// Fills in the missing side of one row; `where` names the input line.
void process_row(const core::Tokenizer& tok, const Settings& s, const Location& where, json* row) {
  const bool has_ids = row->contains("input_ids") && !(*row)["input_ids"].is_null();
  if (has_ids && row->contains("text") && !(*row)["text"].is_null()) {
    // Both given: the ids stay, and the text must encode to them (never overwritten silently).
    auto ids = require_int_list(*row, "input_ids", where);
    core::check_text_matches_ids(tok, require_string(*row, "text", where), ids, where);
  } else if (row->contains("text") && !(*row)["text"].is_null()) {
    std::string text = require_string(*row, "text", where);
    (*row)["input_ids"] = tok.encode(text, s.add_special);
  } else if (row->contains("input_ids") && !(*row)["input_ids"].is_null()) {
    auto ids = require_int_list(*row, "input_ids", where);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= tok.vocab_size()) {
        throw InputError({where.file, where.line, "input_ids[" + std::to_string(i) + "]"},
                         "token id " + std::to_string(ids[i]) + " is outside the vocabulary (" +
                             std::to_string(tok.vocab_size()) + " tokens)");
      }
    }
    (*row)["text"] = tok.decode(ids, s.skip_special);
  } else if (row->contains("messages")) {
    Location at = where;
    at.field = "messages";
    auto messages = core::parse_messages((*row)["messages"], at);
    core::RenderedChat chat =
        core::render_chat(tok, messages, tok.chat_format(), s.generation_prompt);
    (*row)["input_ids"] = chat.ids;
    (*row)["sft_target_mask"] = chat.sft_target_mask();
  } else {
    throw InputError(where, "a line needs \"text\", \"input_ids\" or \"messages\"");
  }
}

int run_tokenize(const std::vector<std::string>& args) {
  po::options_description desc("tokenize options");
  desc.add_options()("tokenizer", po::value<std::string>(),
                     "tokenizer.json, a model folder, or byte-level")(
      "text", po::value<std::string>(), "one string to encode")("input", po::value<std::string>(),
                                                                "JSONL input (`-` = stdin)")(
      "chat-template", po::value<std::string>(), "llama3 | chatml (default: the tokenizer's)")(
      "no-special-tokens", po::bool_switch(), "do not add the post-processor's BOS/EOS")(
      "skip-special-tokens", po::bool_switch(), "leave special tokens out of decoded text")(
      "add-generation-prompt", po::bool_switch(), "end rendered chats with an assistant header");
  add_output_option(desc, "JSONL output (`-` = stdout)");
  po::variables_map vm;
  if (!parse_options(kUsage, desc, args, &vm)) return 0;
  if (!vm.count("tokenizer")) throw UsageError("tokenize: --tokenizer is required");
  const bool has_text = vm.count("text") > 0, has_input = vm.count("input") > 0;
  if (has_text == has_input) throw UsageError("tokenize: give exactly one of --text and --input");

  core::Tokenizer tok = load_tokenizer(vm["tokenizer"].as<std::string>());
  if (vm.count("chat-template")) {
    tok.set_chat_format(core::parse_chat_format(vm["chat-template"].as<std::string>()));
  }
  Settings s;
  s.add_special = !vm["no-special-tokens"].as<bool>();
  s.skip_special = vm["skip-special-tokens"].as<bool>();
  s.generation_prompt = vm["add-generation-prompt"].as<bool>();

  if (has_text) {
    if (output_path(vm)) throw UsageError("tokenize: --output goes with --input, not --text");
    const std::string text = vm["text"].as<std::string>();
    if (!is_valid_utf8(text)) throw InputError({"--text", 0, ""}, "not valid UTF-8");
    json row = {{"text", text}, {"input_ids", tok.encode(text, s.add_special)}};
    std::cout << row.dump() << std::endl;
    return 0;
  }
  JsonlReader reader(vm["input"].as<std::string>());
  JsonlWriter writer(require_output(vm, "tokenize"));
  json row;
  while (reader.next(&row)) {
    process_row(tok, s, reader.where(), &row);
    writer.write(row);
  }
  writer.close();
  return 0;
}

}  // namespace

POSTTRAIN_COMMAND("tokenize", "text <-> token ids with a tokenizer.json or model folder",
                  run_tokenize);

}  // namespace posttrain::app
