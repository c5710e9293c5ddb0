// `posttrain tokenize`: text → ids and ids → text with a model's tokenizer, one string on the
// command line or a JSONL file line by line; every row shape `sft` reads (messages,
// prompt/completion, synth output) gets the ids and target mask SFT trains on, from SFT's own
// reader and renderer (sft/sft_examples.h).
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
#include "sft/sft_examples.h"

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
    "to every row `sft` reads: `messages` (a list of {role, content, weight?}), `prompt` and\n"
    "`completion` (a chat, or raw text with --prompt-completion text, as SFT's\n"
    "data.prompt_completion), a `synth --candidates` output line (its messages; a line with\n"
    "\"kept\": false, which SFT skips, is copied unchanged). Chats are rendered with the\n"
    "tokenizer's chat template or --chat-template; --add-generation-prompt renders a `messages`\n"
    "row for generation instead (ending with an assistant header).\n"
    "example: posttrain tokenize --tokenizer ckpt/ --input prompts.jsonl --output ids.jsonl";

core::Tokenizer load_tokenizer(const std::string& path) {
  if (path == "byte-level") return core::Tokenizer::byte_level();
  return core::Tokenizer::load_dir(path);
}

struct Settings {
  bool add_special = true;
  bool skip_special = false;
  bool generation_prompt = false;
  bool prompt_completion_as_text = false;  // --prompt-completion text (data.prompt_completion)
};

// Rows SFT reads that carry no `text` or `input_ids`.
bool is_sft_row(const json& row) {
  return row.contains("messages") || row.contains("prompt") || row.contains("completion") ||
         row.contains("kept");
}

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
  } else if (s.generation_prompt && row->contains("messages")) {
    if (row->contains("prompt") || row->contains("completion") || row->contains("kept")) {
      throw InputError(where, "--add-generation-prompt renders a plain `messages` row; this line "
                              "is an SFT row (prompt/completion or synth output)");
    }
    Location at = where;
    at.field = "messages";
    auto messages = core::parse_messages((*row)["messages"], at);
    core::RenderedChat chat = core::render_chat(tok, messages, tok.chat_format(), true);
    (*row)["input_ids"] = chat.ids;
    (*row)["sft_target_mask"] = chat.sft_target_mask();
  } else if (is_sft_row(*row)) {
    // Exactly what `sft` reads and trains on.
    const sft::SftExample ex = sft::parse_sft_example(*row, where, s.prompt_completion_as_text);
    if (ex.not_kept) return;  // SFT skips it: nothing to show
    sft::SftTokens t = sft::render_sft_example(tok, tok.chat_format(), ex);
    (*row)["input_ids"] = std::move(t.ids);
    (*row)["sft_target_mask"] = std::move(t.target_mask);
  } else {
    throw InputError(where, "a line needs \"text\", \"input_ids\", \"messages\" or "
                            "\"prompt\"/\"completion\"");
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
      "add-generation-prompt", po::bool_switch(), "end rendered chats with an assistant header")(
      "prompt-completion", po::value<std::string>()->default_value("chat"),
      "string prompt/completion rows: chat | text (as sft's data.prompt_completion)");
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
  const std::string pc = vm["prompt-completion"].as<std::string>();
  if (pc != "chat" && pc != "text") {
    throw UsageError("tokenize: --prompt-completion must be chat or text, got '" + pc + "'");
  }
  s.prompt_completion_as_text = pc == "text";

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
