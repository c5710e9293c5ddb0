// Chat rendering: token ids equal transformers' apply_chat_template on the same Jinja template,
// and our SFT target mask equals transformers' return_assistant_tokens_mask from the template's
// {% generation %} blocks (fixture tests/fixtures/tokenizer/chat_expected.json, made by
// tests/fixtures/make_tokenizer_fixtures.py --chat-only: Llama 3 and ChatML, single- and
// multi-turn, weight 0, tool_calls of built-in and custom tools, content null, role tool,
// special-token strings inside content, whitespace at the content boundaries); the template
// string we save is the one the fixtures used; the per-token labels put SFT and DPO masks on
// exactly the tokens a hand reading of the rendered text says.
#include "core/tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "common/error.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/core/tokenizer_fixtures.h"

namespace posttrain::core {
namespace {

using nlohmann::json;

using testing_fixtures::kDir;

// tests/fixtures/tokenizer/chat_expected.json, parsed once.
const json& chat_expected() {
  static const json doc = [] {
    std::ifstream in(kDir + "chat_expected.json");
    std::stringstream s;
    s << in.rdbuf();
    return json::parse(s.str());
  }();
  return doc;
}

Tokenizer load(const std::string& name) {
  if (name == "byte_level") return Tokenizer::byte_level();
  return Tokenizer::from_file(kDir + name + ".json");
}

// The text of the tokens where mask is 1.
std::string masked_text(const Tokenizer& tok, const RenderedChat& chat,
                        const std::vector<uint8_t>& mask) {
  std::vector<int64_t> kept;
  for (size_t i = 0; i < mask.size(); ++i) {
    if (mask[i]) kept.push_back(chat.ids[i]);
  }
  return tok.decode(kept);
}

TEST(ChatTemplate, JinjaTemplatesAreTheOnesTheFixturesUsed) {
  EXPECT_EQ(jinja_chat_template(ChatFormat::kLlama3),
            chat_expected()["templates"]["llama3"].get<std::string>());
  EXPECT_EQ(jinja_chat_template(ChatFormat::kChatML),
            chat_expected()["templates"]["chatml"].get<std::string>());
}

TEST(ChatTemplate, IdsAndSftMaskMatchTransformersAssistantMask) {
  ASSERT_GE(chat_expected()["chat"].size(), 30u);
  int tool_cases = 0, masked_tokens = 0;
  for (const json& c : chat_expected()["chat"]) {
    Tokenizer tok = load(c["tokenizer"].get<std::string>());
    ChatFormat format = parse_chat_format(c["format"].get<std::string>());
    auto messages = parse_messages(c["messages"], {"chat_expected.json", 0, "messages"});
    SCOPED_TRACE(c["tokenizer"].get<std::string>() + " " + c["text"].dump());
    RenderedChat chat = render_chat(tok, messages, format, c["add_generation_prompt"]);
    EXPECT_EQ(chat.ids, c["ids"].get<std::vector<int64_t>>());
    ASSERT_EQ(chat.labels.size(), chat.ids.size());
    EXPECT_EQ(tok.decode(chat.ids), tok.decode(c["ids"].get<std::vector<int64_t>>()));
    auto hf_mask = c["assistant_masks"].get<std::vector<uint8_t>>();
    EXPECT_EQ(chat.sft_target_mask(), hf_mask);
    for (uint8_t m : hf_mask) masked_tokens += m;
    for (const ChatMessage& m : messages) tool_cases += !m.tool_calls.empty();
  }
  EXPECT_GE(tool_cases, 10);       // the tool turns are really in the fixture
  EXPECT_GT(masked_tokens, 1000);  // and transformers' masks are not all zeros
}

TEST(ChatTemplate, Llama3LabelsPutSftOnAssistantContentAndEndToken) {
  Tokenizer tok = load("llama3");
  std::vector<ChatMessage> messages = {
      {"system", "Be brief."}, {"user", "What is 2+2?"}, {"assistant", "  4, of course.  "}};
  RenderedChat chat = render_chat(tok, messages, ChatFormat::kLlama3);
  EXPECT_EQ(masked_text(tok, chat, chat.sft_target_mask()), "4, of course.<|eot_id|>");
  EXPECT_EQ(masked_text(tok, chat, chat.content_mask(1)), "What is 2+2?");
  EXPECT_EQ(masked_text(tok, chat, chat.content_mask(2)), "4, of course.");
  EXPECT_EQ(chat.labels.front().message, -1);  // BOS
  EXPECT_EQ(chat.ids.front(), *tok.token_id("<|begin_of_text|>"));
  EXPECT_TRUE(chat.labels.back().is_turn_end);
  EXPECT_EQ(chat.labels.back().role, Role::kAssistant);
  EXPECT_EQ(chat.labels.back().weight, 1);
  EXPECT_FALSE(chat.labels.back().is_content);
  for (const TokenLabel& l : chat.labels) {
    if (l.message == 0 || l.message == 1) {
      EXPECT_EQ(l.weight, 0);
    }
  }
}

TEST(ChatTemplate, WeightZeroAssistantTurnIsNotTrained) {
  Tokenizer tok = load("byte_level");
  std::vector<ChatMessage> messages = {{"user", "hi"},
                                       {"assistant", "old answer", 0},
                                       {"user", "again"},
                                       {"assistant", "new answer"}};
  RenderedChat chat = render_chat(tok, messages, ChatFormat::kLlama3);
  EXPECT_EQ(masked_text(tok, chat, chat.sft_target_mask()), "new answer<|eot_id|>");
  messages[0].weight = 1;  // a user turn with weight 1 is still not an assistant target
  chat = render_chat(tok, messages, ChatFormat::kLlama3);
  EXPECT_EQ(masked_text(tok, chat, chat.sft_target_mask()), "new answer<|eot_id|>");
}

TEST(ChatTemplate, ToolCallEndsWithEomAndTrainsOnIt) {
  Tokenizer tok = load("llama3");
  std::vector<ChatMessage> messages = {{"user", "Compute 6*7"},
                                       {"assistant", "<|python_tag|>calc(6*7)"},
                                       {"ipython", "42"},
                                       {"assistant", "It is 42."}};
  RenderedChat chat = render_chat(tok, messages, ChatFormat::kLlama3);
  EXPECT_EQ(masked_text(tok, chat, chat.sft_target_mask()),
            "<|python_tag|>calc(6*7)<|eom_id|>It is 42.<|eot_id|>");
  EXPECT_EQ(masked_text(tok, chat, chat.content_mask(2)), "42");
  int ipython = 0;
  for (const TokenLabel& l : chat.labels) ipython += l.role == Role::kIpython;
  EXPECT_GT(ipython, 0);
}

TEST(ChatTemplate, ToolCallsRenderLikeLlama31AndChatML) {
  Tokenizer tok = load("byte_level");
  auto messages = parse_messages(json::parse(R"([
      {"role": "user", "content": "Weather?"},
      {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function":
          {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
      {"role": "tool", "content": "9"},
      {"role": "assistant", "content": "", "tool_calls": [{"name": "brave_search",
          "arguments": {"query": "oslo", "count": 3}}]},
      {"role": "ipython", "content": "cold"},
      {"role": "assistant", "content": "Cold, 9."}])"),
                                 {"t.jsonl", 3, ""});
  RenderedChat chat = render_chat(tok, messages, ChatFormat::kLlama3);
  // Custom tool: JSON with the arguments string as given, <|eot_id|>; built-in: .call(k="v")
  // with keys sorted and a number printed as JSON, <|eom_id|>; role tool is ipython.
  EXPECT_EQ(masked_text(tok, chat, chat.sft_target_mask()),
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}<|eot_id|>"
            "<|python_tag|>brave_search.call(count=\"3\", query=\"oslo\")<|eom_id|>"
            "Cold, 9.<|eot_id|>");
  EXPECT_NE(tok.decode(chat.ids).find("<|start_header_id|>ipython<|end_header_id|>\n\n9"),
            std::string::npos);
  EXPECT_EQ(tok.decode(chat.ids).find("<|start_header_id|>tool"), std::string::npos);

  Tokenizer qwen = load("qwen_nfc");
  messages[1].content = "Checking.";
  messages[1].tool_calls.push_back({"lookup", R"({"a":[1,2.5]})", ""});
  messages.resize(3);
  chat = render_chat(qwen, messages, ChatFormat::kChatML);
  EXPECT_EQ(masked_text(qwen, chat, chat.sft_target_mask()),
            "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
            "\"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"lookup\", \"arguments\": "
            "{\"a\": [1, 2.5]}}\n</tool_call><|im_end|>");
  // Llama 3 takes one call per message.
  try {
    render_chat(tok, messages, ChatFormat::kLlama3);
    ADD_FAILURE() << "two calls rendered for Llama 3";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("messages[1].tool_calls"), std::string::npos);
  }
}

TEST(ChatTemplate, ChatMLLabelsAndGenerationPrompt) {
  Tokenizer tok = load("qwen_nfc");
  std::vector<ChatMessage> messages = {{"user", "Hallo Köln"}, {"assistant", "Guten Tag!"}};
  RenderedChat chat = render_chat(tok, messages, ChatFormat::kChatML, true);
  EXPECT_EQ(masked_text(tok, chat, chat.sft_target_mask()), "Guten Tag!<|im_end|>");
  EXPECT_EQ(tok.decode(chat.ids),
            "<|im_start|>user\nHallo Köln<|im_end|>\n<|im_start|>assistant\nGuten Tag!"
            "<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(chat.labels.back().message, -1);  // generation prompt is outside any message
}

TEST(ChatTemplate, MissingFormatTokensIsAUsageError) {
  std::vector<ChatMessage> messages = {{"user", "hi"}};
  EXPECT_THROW(render_chat(load("byte_level"), messages, ChatFormat::kChatML), UsageError);
  EXPECT_THROW(render_chat(load("qwen_nfc"), messages, ChatFormat::kLlama3), UsageError);
}

TEST(ChatMessages, ParseNamesTheBadField) {
  Location where{"in.jsonl", 7, ""};
  auto expect_error = [&](const char* text, const std::string& field) {
    try {
      parse_messages(json::parse(text), where);
      ADD_FAILURE() << "no error for " << text;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("in.jsonl"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  expect_error(R"({"role": "user"})", "messages");
  expect_error(R"([])", "messages");
  expect_error(R"([{"role": "user", "content": "a"}, {"content": "b"}])", "messages[1].role");
  expect_error(R"([{"role": "user", "content": 3}])", "messages[0].content");
  expect_error(R"([{"role": "user", "content": "a", "weight": 2}])", "messages[0].weight");
  expect_error(R"(["hello"])", "messages[0]");
  expect_error(R"([{"role": "asistant", "content": "a"}])", "messages[0].role");
  expect_error(R"([{"role": "user", "content": "a", "tool_calls": []}])",
               "messages[0].tool_calls");
  expect_error(R"([{"role": "assistant", "content": null, "tool_calls": [{"function": {}}]}])",
               "messages[0].tool_calls[0].function.name");
  expect_error(R"([{"role": "assistant", "tool_calls": [{"name": "f", "arguments": "[1"}]}])",
               "messages[0].tool_calls[0].arguments");
  expect_error(R"([{"role": "assistant", "tool_calls": [{"name": "f", "arguments": [1]}]}])",
               "messages[0].tool_calls[0].arguments");
  expect_error(R"([{"role": "user"}])", "messages[0].content");
  auto ok = parse_messages(
      json::parse(R"([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b",
                       "weight": 0}])"),
      where);
  ASSERT_EQ(ok.size(), 2u);
  EXPECT_EQ(ok[0].weight, -1);
  auto null_content = parse_messages(json::parse(R"([{"role": "assistant", "content": null}])"),
                                     where);
  EXPECT_EQ(null_content[0].content, "");
  try {
    parse_messages(json::parse(R"([{"role": "user", "content": "a"}, {"role": "Assistant",
                                    "content": "b"}])"),
                   where);
    ADD_FAILURE() << "a mistyped role was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("in.jsonl:7"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unknown role 'Assistant'"), std::string::npos);
  }
  EXPECT_EQ(ok[1].weight, 0);
  try {
    parse_messages(json::parse(R"([{"role": 1, "content": "a"}])"), {"f", 2, "chosen"});
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("chosen[0].role"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace posttrain::core
