// Held-out data never trains (see heldout.h).
#include "recipes/heldout.h"

#include <filesystem>
#include <iostream>
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
  std::string split = "all";  // synth --split
};

// Sets drawn from opposite sides of synth's train / held-out split never share a problem.
bool opposite_splits(const SynthSet& a, const SynthSet& b) {
  return (a.split == "heldout" && b.split == "train") || (a.split == "train" && b.split == "heldout");
}

std::optional<SynthSet> synth_set_of(const json& config, int round) {
  if (!config.is_object() || !config.contains("kind") || !config["kind"].is_string()) {
    return std::nullopt;
  }
  SynthSet s{config["kind"].get<std::string>(), 0};  // synth's default --seed is 0
  if (config.contains("split") && config["split"].is_string()) s.split = config["split"].get<std::string>();
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

std::map<std::string, int64_t> exclude_training_prompts(const json& config,
                                                        const std::string& out_dir,
                                                        const std::string& store) {
  std::map<std::string, std::string> training;  // hash -> store row
  if (!store.empty() && fs::exists(store)) {
    datastore::Store db = datastore::Store::open(store);
    training = store_prompt_hashes(db);
  }
  std::map<std::string, int64_t> excluded;
  JsonlWriter record(out_dir + "/heldout.jsonl");
  for (const std::string& eval : eval_names()) {
    if (!config.contains(eval)) continue;
    const bool pairs = eval == "reward" || eval == "dpo";
    const std::string file = out_dir + "/" + eval + (pairs ? "/pairs.jsonl" : "/problems.jsonl");
    std::vector<json> kept;
    JsonlReader reader(file);
    json row;
    while (reader.next(&row)) {
      const std::string id = row.contains("id") && row["id"].is_string()
                                 ? row["id"].get<std::string>()
                                 : std::to_string(reader.line());
      // An implicit-prompt pair carries its prompt as the user turns of its responses.
      const json prompt =
          row.contains("prompt") ? row["prompt"] : (pairs ? row.value("chosen", json()) : json());
      json line = {{"eval", eval}, {"id", id}, {"sha256", json::array()}};
      for (const std::string& text : prompt_texts(prompt)) {
        const std::string hash = sha256_hex(text);
        line["sha256"].push_back(hash);
        auto it = training.find(hash);
        if (it != training.end()) line["training"] = it->second;
      }
      record.write(line);
      if (line.contains("training")) {
        ++excluded[eval];
        std::cout << "eval " << eval << ": held-out " << id << " left out: its prompt is training "
                  << "data in the store (" << line["training"].get<std::string>() << ")\n";
      } else {
        kept.push_back(std::move(row));
      }
    }
    if (kept.empty()) {
      throw InputError({store, 0, eval},
                       "every held-out prompt of eval '" + eval + "' (" + file +
                           ") is training data in the store; give the eval another seed or "
                           "held-out file");
    }
    JsonlWriter out(file + ".tmp");
    for (const auto& k : kept) out.write(k);
    out.close();
    fs::rename(file + ".tmp", file);
  }
  record.close();
  return excluded;
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
            if (!a || !b || a->kind != b->kind || opposite_splits(*a, *b)) continue;
            if (a->seed != b->seed) continue;
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
