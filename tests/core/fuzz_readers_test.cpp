// A seeded mutation fuzzer per reader (safetensors header, config.json, tokenizer.json, chat
// messages, every JSONL row shape), run for a bounded time each (about 5 s, under 40 s in all).
// The contract: any input either parses or throws a posttrain::Error; any other exception fails
// the test and the input is written next to the binary's temp dir and printed (a crash kills the
// process, which fails it too). Inputs that broke a reader once are kept under
// tests/fixtures/fuzz/<target>/ and replayed first, so they stay fixed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/json_depth.h"
#include "common/jsonl.h"
#include "core/checkpoint/safetensors.h"
#include "core/data/examples.h"
#include "core/model/llama_config.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"
// The SFT row reader lives in sft/ (core knows no stage); its rows are fuzzed here beside the
// other readers, so test_core links posttrain_sft (tests/CMakeLists.txt).
#include "sft/sft_examples.h"

namespace fs = std::filesystem;

namespace posttrain::core {
namespace {

const std::string kFixtures = POSTTRAIN_FIXTURES;

std::string read_file(const std::string& path, size_t max_bytes = SIZE_MAX) {
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), {});
  if (s.size() > max_bytes) s.resize(max_bytes);
  return s;
}

// One random edit: flip, insert, delete, duplicate or splice a span, or plant something hostile
// (deep nesting, a huge number, a quote, a NUL, an invalid UTF-8 byte, a long run).
std::string mutate(std::string s, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  static const std::vector<std::string> kPlants = {
      "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "{\"a\":{\"a\":{\"a\":{\"a\":", "99999999999999999999",
      "-9223372036854775809", "1e999", "-1", "0", "null", "true", "\"", "\\", "\\u0000",
      std::string(1, '\0'), "\xff", "\xc3", "NaN", "\"\":", ",", "]", "}", "1.5",
      std::string(4096, 'a'), "{\"type\": \"Sequence\", \"pretokenizers\": [", "\"messages\"",
      "\"input_ids\"", "\"text\"", "\"role\"", "\"content\"", "\"weight\"", "\"id\""};
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    const size_t at = pick(s.size() + 1);
    switch (rng() % 7) {
      case 0:
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1 << (rng() % 8));
        break;
      case 1:
        s.insert(at, 1, static_cast<char>(rng() % 256));
        break;
      case 2:
        s.erase(at, pick(64) + 1);
        break;
      case 3: {  // duplicate a span somewhere else
        const size_t len = std::min<size_t>(pick(256) + 1, s.size() - std::min(at, s.size()));
        const std::string span = s.substr(std::min(at, s.size()), len);
        s.insert(pick(s.size() + 1), span);
        break;
      }
      case 4:
      case 5:
        s.insert(at, kPlants[pick(kPlants.size())]);
        break;
      default:
        s.resize(pick(s.size() + 1));  // truncate
    }
  }
  if (s.size() > (1 << 20)) s.resize(1 << 20);
  return s;
}

std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, 400)) {
    if (c >= 32 && c < 127) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out + (s.size() > 400 ? "..." : "");
}

// Runs `reader` on the kept regression inputs, the seeds, then mutations of the seeds until
// `seconds` pass. Returns the inputs that escaped with something other than posttrain::Error.
std::vector<std::string> fuzz(const std::string& target, const std::vector<std::string>& seeds,
                              double seconds, const std::function<void(const std::string&)>& reader,
                              int* runs) {
  std::vector<std::string> corpus;
  const fs::path kept = fs::path(kFixtures) / "fuzz" / target;
  if (fs::is_directory(kept)) {
    for (const auto& e : fs::directory_iterator(kept)) corpus.push_back(read_file(e.path()));
  }
  corpus.insert(corpus.end(), seeds.begin(), seeds.end());
  std::vector<std::string> bad;
  auto one = [&](const std::string& input) {
    ++*runs;
    try {
      reader(input);
    } catch (const Error&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << target << ": " << typeid(e).name() << ": " << e.what()
                    << "\n  input: " << printable(input);
      bad.push_back(input);
    }
  };
  for (const auto& c : corpus) one(c);
  std::mt19937_64 rng(std::hash<std::string>()(target));
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (std::chrono::steady_clock::now() < until && bad.size() < 5) {
    const std::string& base = seeds[rng() % seeds.size()];
    one(mutate(base, rng));
  }
  for (size_t i = 0; i < bad.size(); ++i) {
    const fs::path out = fs::temp_directory_path() /
                         ("posttrain_fuzz_" + target + "_" + std::to_string(getpid()) + "_" +
                          std::to_string(i));
    std::ofstream(out, std::ios::binary) << bad[i];
    ADD_FAILURE() << "kept as " << out << " (copy it to tests/fixtures/fuzz/" << target << "/)";
  }
  return bad;
}

constexpr double kSeconds = 5.0;

TEST(FuzzReaders, SafetensorsHeader) {
  std::vector<std::string> seeds;
  for (const char* m : {"llama3_untied", "tied_plain", "reward"}) {
    // The 8-byte length plus the JSON header (the data is not needed to parse it).
    std::string bytes = read_file(kFixtures + "/models/" + m + "/model.safetensors", 1 << 16);
    seeds.push_back(bytes);
  }
  int runs = 0;
  fuzz("safetensors", seeds, kSeconds,
       [](const std::string& b) {
         // The file is claimed to be as long as the header says plus 1 MiB of data.
         parse_safetensors_header(b.data(), b.size(), b.size() + (1 << 20), "fuzz.safetensors");
       },
       &runs);
  EXPECT_GT(runs, 100);
}

TEST(FuzzReaders, ConfigJson) {
  std::vector<std::string> seeds;
  for (const char* m : {"llama3_untied", "tied_plain", "reward", "config_v4", "bf16_sharded"}) {
    seeds.push_back(read_file(kFixtures + "/models/" + m + "/config.json"));
  }
  int runs = 0;
  fuzz("config", seeds, kSeconds,
       [](const std::string& text) {
         LlamaConfig::from_json(parse_json(text, Location{"config.json", 0, ""}), "config.json");
       },
       &runs);
  EXPECT_GT(runs, 100);
}

TEST(FuzzReaders, TokenizerJson) {
  std::vector<std::string> seeds;
  for (const char* t : {"llama3", "gpt2_digits", "qwen_nfc", "split_behaviors"}) {
    seeds.push_back(read_file(kFixtures + "/tokenizer/" + t + ".json"));
  }
  const std::string path =
      (fs::temp_directory_path() / ("posttrain_fuzz_tok_" + std::to_string(getpid()) + ".json"))
          .string();
  int runs = 0;
  fuzz("tokenizer", seeds, kSeconds,
       [&](const std::string& text) {
         std::ofstream(path, std::ios::binary) << text;
         Tokenizer tok = Tokenizer::from_file(path);
         // A loaded tokenizer must also encode and decode (the round trip is tested elsewhere).
         tok.decode(tok.encode("Hello world 123 <|eot_id|> \xc3\xa9"));
       },
       &runs);
  fs::remove(path);
  EXPECT_GT(runs, 20);
}

TEST(FuzzReaders, ChatMessages) {
  const std::vector<std::string> seeds = {
      R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
          {"role": "assistant", "content": "hello", "weight": 1}])",
      R"J([{"role": "user", "content": "2+2?"},
          {"role": "assistant", "content": "<|python_tag|>calculator.call(expression=\"2+2\")"},
          {"role": "ipython", "content": "4"}, {"role": "assistant", "content": "4", "weight": 0}])J"};
  const Tokenizer tok = Tokenizer::byte_level();
  int runs = 0;
  fuzz("messages", seeds, kSeconds,
       [&](const std::string& text) {
         const auto messages = parse_messages(parse_json(text, Location{"m", 1, ""}),
                                              Location{"m", 1, "messages"});
         for (ChatFormat f : {ChatFormat::kLlama3, ChatFormat::kChatML}) {
           render_chat(tok, messages, f, false);
           render_chat(tok, messages, f, true);
         }
       },
       &runs);
  EXPECT_GT(runs, 100);
}

TEST(FuzzReaders, JsonlRowShapes) {
  // Every row shape the commands read: SFT messages, prompt/completion (chat and text), token
  // rows (text / input_ids), preference pairs, verify rows.
  std::vector<std::string> seeds = {
      R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})",
      R"({"prompt": "Say hi", "completion": "hi"})",
      R"({"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": "b"}]})",
      R"({"text": "hello", "input_ids": [256, 104, 101, 108, 108, 111]})",
      R"({"prompt": "p", "chosen": "c", "rejected": "r"})",
      R"({"id": "a", "prompt": "6 * 7?", "response": "6 * 7 = 42\nAnswer: 42", "answer": "42"})"};
  for (const char* f : {"messages", "annotations", "hh_rlhf", "ranking"}) {
    std::istringstream in(read_file(kFixtures + "/datastore/" + f + ".jsonl"));
    std::string line;
    if (std::getline(in, line)) seeds.push_back(line);
  }
  const std::string path =
      (fs::temp_directory_path() / ("posttrain_fuzz_rows_" + std::to_string(getpid()) + ".jsonl"))
          .string();
  const Tokenizer tok = Tokenizer::byte_level();
  int runs = 0;
  fuzz("jsonl", seeds, kSeconds,
       [&](const std::string& line) {
         std::ofstream(path, std::ios::binary) << line << "\n" << line << "\n";
         JsonlReader reader(path);
         nlohmann::json row;
         while (reader.next(&row)) {
           // Written back out as the commands do (this recursed on deep rows).
           (void)row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
           for (bool as_text : {false, true}) {
             try {
               sft::SftExample ex = sft::parse_sft_example(row, reader.where(), as_text);
               sft::tokenize_sft_example(tok, ChatFormat::kLlama3, ex);
             } catch (const Error&) {
             }
           }
           if (row.contains("input_ids")) require_int_list(row, "input_ids", reader.where());
         }
       },
       &runs);
  fs::remove(path);
  EXPECT_GT(runs, 100);
}

}  // namespace
}  // namespace posttrain::core
