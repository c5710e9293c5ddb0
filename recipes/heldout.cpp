// Held-out data never trains (see heldout.h).
#include "recipes/heldout.h"

#include <filesystem>
#include <map>
#include <optional>

#include "common/error.h"
#include "common/jsonl.h"
#include "common/sha256.h"
#include "datastore/sqlite.h"
#include "datastore/store.h"
#include "recipes/evals.h"

namespace posttrain::recipes {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void add_prompts_of(const std::string& eval, const std::string& path, bool pairs,
                    std::vector<HeldoutPrompt>* out) {
  JsonlReader reader(path);
  json row;
  while (reader.next(&row)) {
    const std::string id = row.contains("id") && row["id"].is_string()
                               ? row["id"].get<std::string>()
                               : std::to_string(reader.line());
    // An implicit-prompt pair carries its prompt as the user turns of its responses.
    const json& prompt =
        row.contains("prompt") ? row["prompt"] : (pairs ? row.value("chosen", json()) : json());
    for (const std::string& text : prompt_texts(prompt)) {
      out->push_back({eval, id, sha256_hex(text)});
    }
  }
}

// hash -> a description of the store row holding that training prompt text.
std::map<std::string, std::string> store_prompt_hashes(datastore::Store& store) {
  std::map<std::string, std::string> hashes;
  auto add = [&](const json& prompt, const std::string& what) {
    for (const std::string& text : prompt_texts(prompt)) hashes.emplace(sha256_hex(text), what);
  };
  auto parsed = [](const std::string& text) {
    return json::parse(text, nullptr, /*allow_exceptions=*/false);
  };
  datastore::Statement prompts(store.db(), "SELECT id, body, source FROM prompts");
  while (prompts.step()) {
    add(parsed(prompts.column_text(1)), "prompts row " + std::to_string(prompts.column_int(0)) +
                                            " (source '" + prompts.column_text(2) + "')");
  }
  datastore::Statement problems(store.db(), "SELECT id, spec, round FROM synthetic_problems");
  while (problems.step()) {
    const json spec = parsed(problems.column_text(1));
    if (spec.is_object() && spec.contains("prompt")) {
      add(spec["prompt"], "synthetic problem " + std::to_string(problems.column_int(0)) +
                              " (round " + std::to_string(problems.column_int(2)) + ")");
    }
  }
  datastore::Statement dialogues(store.db(), "SELECT id, body, round FROM dialogues");
  while (dialogues.step()) {
    add(parsed(dialogues.column_text(1)), "dialogue " + std::to_string(dialogues.column_int(0)) +
                                              " (round " + std::to_string(dialogues.column_int(2)) +
                                              ")");
  }
  return hashes;
}

// A synth-made held-out set or training set: the kind and seed that fix its problems.
struct SynthSet {
  std::string kind;
  int64_t seed = 0;
};

std::optional<SynthSet> synth_set_of(const json& config, int round) {
  if (!config.is_object() || !config.contains("kind") || !config["kind"].is_string()) {
    return std::nullopt;
  }
  SynthSet s{config["kind"].get<std::string>(), 0};  // synth's default --seed is 0
  if (config.contains("seed")) {
    if (config["seed"].is_number_integer()) {
      s.seed = config["seed"].get<int64_t>();
    } else if (config["seed"] == "${round}") {
      s.seed = round;
    } else {
      return std::nullopt;
    }
  }
  return s;
}

// Absolute normalised path, for comparing two spellings of one file.
std::string same_file_key(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path), ec);
  return (ec ? fs::absolute(path).lexically_normal() : p).string();
}

// The JSONL files a training stage reads (data.sources: paths or {"path"}).
std::vector<std::string> training_files(const StageSpec& stage) {
  std::vector<std::string> files;
  if (stage.kind != "sft" && stage.kind != "reward" && stage.kind != "dpo") return files;
  const json& c = stage.config;
  if (!c.contains("data") || !c["data"].is_object() || !c["data"].contains("sources") ||
      !c["data"]["sources"].is_array()) {
    return files;
  }
  for (const json& s : c["data"]["sources"]) {
    if (s.is_string()) files.push_back(s.get<std::string>());
    if (s.is_object() && s.contains("path") && s["path"].is_string()) {
      files.push_back(s["path"].get<std::string>());
    }
  }
  return files;
}

std::string stage_name(const StageSpec& s, int round) {
  return "stage '" + s.name + "' (" + s.where + ", round " + std::to_string(round) + ")";
}

}  // namespace

std::vector<std::string> prompt_texts(const json& prompt) {
  if (prompt.is_string()) return {prompt.get<std::string>()};
  std::vector<std::string> texts;
  if (!prompt.is_array()) return texts;
  for (const json& m : prompt) {
    if (m.is_object() && m.value("role", "") == "user" && m.contains("content") &&
        m["content"].is_string()) {
      texts.push_back(m["content"].get<std::string>());
    }
  }
  return texts;
}

std::vector<HeldoutPrompt> heldout_prompts(const json& config, const std::string& out_dir) {
  std::vector<HeldoutPrompt> out;
  for (const char* eval : {"math", "tool", "code", "win_rate"}) {
    if (config.contains(eval)) {
      add_prompts_of(eval, out_dir + "/" + eval + "/problems.jsonl", false, &out);
    }
  }
  for (const char* eval : {"reward", "dpo"}) {
    if (config.contains(eval)) {
      add_prompts_of(eval, config[eval]["pairs"].get<std::string>(), true, &out);
    }
  }
  return out;
}

void write_heldout(const std::vector<HeldoutPrompt>& prompts, const std::string& path) {
  JsonlWriter out(path);
  for (const auto& p : prompts) out.write({{"eval", p.eval}, {"id", p.id}, {"sha256", p.sha256}});
  out.close();
}

void check_store_disjoint(const std::vector<HeldoutPrompt>& prompts, const std::string& store) {
  if (store.empty() || !fs::exists(store)) return;
  datastore::Store db = datastore::Store::open(store);
  const auto training = store_prompt_hashes(db);
  for (const auto& p : prompts) {
    auto it = training.find(p.sha256);
    if (it == training.end()) continue;
    throw InputError({store, 0, p.eval}, "held-out prompt " + p.id + " of eval '" + p.eval +
                                             "' is training data in the store (" + it->second +
                                             "); give the eval another seed or held-out file");
  }
}

void check_heldout_disjoint(const Recipe& recipe, int rounds) {
  for (int r = 0; r < rounds; ++r) {
    for (const StageSpec& eval_stage : recipe.round(r).stages) {
      if (eval_stage.kind != "eval") continue;
      const std::string where = recipe.source + " " + eval_stage.where;
      const json config = eval_defaults(eval_stage.config, where);
      for (int t = 0; t < rounds; ++t) {
        for (const StageSpec& train : recipe.round(t).stages) {
          // Synthetic sets: same kind and seed are the same problems.
          for (const char* eval : {"math", "tool", "code", "win_rate"}) {
            if (!config.contains(eval) || train.kind != "synth") continue;
            json held = config[eval];
            if (held.contains("prompts")) continue;
            held["kind"] = eval == std::string("win_rate") ? held.value("kind", "math") : eval;
            auto a = synth_set_of(held, r), b = synth_set_of(train.config, t);
            if (!a || !b || a->kind != b->kind || a->seed != b->seed) continue;
            throw InputError({recipe.source, 0, eval_stage.where + ".config." + eval + ".seed"},
                             "the held-out " + a->kind + " problems of eval " +
                                 stage_name(eval_stage, r) + " (seed " + std::to_string(a->seed) +
                                 ") are the problems synth " + stage_name(train, t) +
                                 " makes for training; give the eval another seed");
          }
          // Files: an eval's pairs or prompts read as training data.
          for (const char* eval : {"reward", "dpo", "win_rate"}) {
            if (!config.contains(eval)) continue;
            const json& s = config[eval];
            const char* key = eval == std::string("win_rate") ? "prompts" : "pairs";
            if (!s.contains(key) || !s[key].is_string()) continue;
            for (const std::string& file : training_files(train)) {
              if (same_file_key(file) != same_file_key(s[key].get<std::string>())) continue;
              throw InputError({recipe.source, 0, eval_stage.where + ".config." + eval + "." + key},
                               "the held-out file " + file + " of eval " +
                                   stage_name(eval_stage, r) + " is a training source of " +
                                   stage_name(train, t));
            }
          }
        }
      }
    }
  }
}

}  // namespace posttrain::recipes
