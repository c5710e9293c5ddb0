// The reward stage's data assembly and runner (see reward.h).
#include "reward/reward.h"

#include <cmath>
#include <filesystem>
#include <iostream>

#include <ATen/ATen.h>

#include "common/error.h"
#include "common/jsonl.h"
#include "core/distributed/data_parallel.h"
#include "core/train/trainer_options.h"
#include "reward/model.h"
#include "reward/rows.h"

namespace posttrain::reward {

namespace {

int64_t count_pairs(const std::vector<RankedTokens>& v) {
  int64_t n = 0;
  for (const auto& r : v) n += static_cast<int64_t>(r.pairs.size());
  return n;
}

// Whether two of the ranked responses of a raw row are the same value.
bool has_identical_responses(const nlohmann::json& row) {
  std::vector<const nlohmann::json*> v;
  if (row.contains("responses") && row.contains("ranking") && row["responses"].is_array() &&
      row["ranking"].is_array()) {
    for (const auto& i : row["ranking"]) {
      if (!i.is_number_integer()) return false;
      const int64_t k = i.get<int64_t>();
      if (k < 0 || k >= static_cast<int64_t>(row["responses"].size())) return false;
      v.push_back(&row["responses"][static_cast<size_t>(k)]);
    }
  } else if (row.contains("chosen") && row.contains("rejected")) {
    v = {&row["chosen"], &row["rejected"]};
  }
  if (row.contains("edited") && !row["edited"].is_null()) {
    for (size_t i = 1; i < v.size(); ++i) {
      if (row["edited"] == *v[i]) return true;  // an edit equal to a worse response
    }
  }
  for (size_t i = 0; i < v.size(); ++i)
    for (size_t j = i + 1; j < v.size(); ++j)
      if (!v[i]->is_null() && *v[i] == *v[j]) return true;
  return false;
}

void check_no_pad(const RankedTokens& t, int64_t pad, const Location& where) {
  auto holds = [pad](const std::vector<int64_t>& ids) {
    return std::find(ids.begin(), ids.end(), pad) != ids.end();
  };
  bool bad = holds(t.prompt);
  for (const auto& r : t.responses) bad = bad || holds(r);
  if (bad) {
    throw InputError(where, "holds the reward model's pad token (id " + std::to_string(pad) +
                                "), which must never appear in the data; set model.pad_token_id "
                                "to another reserved token");
  }
}

// Filters and tokenises one source's rankings into `out`.
std::vector<RankedTokens> tokenize_source(const std::vector<Ranking>& rankings,
                                          const RewardDataOptions& o, const core::Tokenizer& tok,
                                          const TokenizeOptions& to, int64_t pad,
                                          SourceCounts* c) {
  std::vector<RankedTokens> out;
  for (const auto& r : rankings) {
    const auto pairs = distinct_pairs(r, o.near_duplicate, &c->near_duplicate_pairs);
    if (pairs.empty()) {
      ++c->dropped_no_pairs;
      continue;
    }
    bool truncated = false;
    auto t = tokenize_ranking(tok, r, pairs, to, &truncated);
    if (!t) {
      // Dropped by the length policy, or every pair's sequences rendered identical (counted as
      // a length drop when truncation made them so).
      bool long_drop = truncated;
      if (o.overlong == core::OverlongPolicy::kDrop) {
        TokenizeOptions keep = to;
        keep.max_seq_len = INT64_MAX;
        bool tr = false;
        long_drop = tokenize_ranking(tok, r, pairs, keep, &tr).has_value();
      }
      ++(long_drop ? c->dropped_long : c->dropped_no_pairs);
      continue;
    }
    c->truncated += truncated;
    c->near_duplicate_pairs += static_cast<int64_t>(pairs.size() - t->pairs.size());
    check_no_pad(*t, pad, r.example.where);
    out.push_back(std::move(*t));
  }
  return out;
}

// Holds out a seeded eval fraction, then repeats/subsamples the rest by the source weight
// (floor(w) copies plus a seeded fraction w - floor(w)), as core's mixture does for SFT.
void split_and_weight(std::vector<RankedTokens> all, double weight, bool eval_only,
                      double eval_fraction, uint64_t seed, SourceCounts* c, RewardData* data) {
  if (eval_only) {
    c->eval = static_cast<int64_t>(all.size());
    for (auto& r : all) data->eval.push_back(std::move(r));
    return;
  }
  const int64_t n = static_cast<int64_t>(all.size());
  const auto perm = core::seeded_permutation(n, seed ^ 0x5EEDE7A1ULL);
  const auto n_eval = static_cast<int64_t>(std::floor(eval_fraction * static_cast<double>(n)));
  std::vector<RankedTokens> train;
  for (int64_t i = 0; i < n; ++i) {
    auto& r = all[static_cast<size_t>(perm[static_cast<size_t>(i)])];
    if (i < n_eval) {
      data->eval.push_back(std::move(r));
    } else {
      train.push_back(std::move(r));
    }
  }
  c->eval = n_eval;
  const auto copies = static_cast<int64_t>(std::floor(weight));
  for (int64_t k = 0; k < copies; ++k) data->train.insert(data->train.end(), train.begin(), train.end());
  const double frac = weight - static_cast<double>(copies);
  const auto n_frac = static_cast<int64_t>(std::floor(frac * static_cast<double>(train.size())));
  const auto pick = core::seeded_permutation(static_cast<int64_t>(train.size()), seed + 17);
  for (int64_t i = 0; i < n_frac; ++i) data->train.push_back(train[static_cast<size_t>(pick[static_cast<size_t>(i)])]);
  c->train = copies * static_cast<int64_t>(train.size()) + n_frac;
  c->train_pairs = copies * count_pairs(train);
  for (int64_t i = 0; i < n_frac; ++i) {
    c->train_pairs += static_cast<int64_t>(train[static_cast<size_t>(pick[static_cast<size_t>(i)])].pairs.size());
  }
}

}  // namespace

int64_t RewardData::train_pairs() const { return count_pairs(train); }
int64_t RewardData::eval_pairs() const { return count_pairs(eval); }

std::vector<Ranking> read_jsonl_rankings(const std::string& path, bool strings_as_text,
                                         const std::optional<datastore::Strength>& min_strength,
                                         SourceCounts* c) {
  core::PreferenceReadOptions ro;
  ro.strings_as_chat = !strings_as_text;
  ro.default_source = std::filesystem::path(path).stem().string();
  JsonlReader reader(path);
  std::vector<Ranking> out;
  nlohmann::json row;
  while (reader.next(&row)) {
    ++c->read;
    if (row.is_object() && has_identical_responses(row)) {
      ++c->near_duplicate_pairs;
      ++c->dropped_no_pairs;
      continue;
    }
    Ranking r;
    r.example = core::parse_preference_example(row, reader.where(), ro);
    if (!passes_strength(store_strength(r.example.strength), min_strength)) {
      ++c->filtered_strength;
      continue;
    }
    out.push_back(std::move(r));
  }
  return out;
}

RewardData build_reward_data(const RewardDataOptions& o, const core::Tokenizer& tok,
                             core::ChatFormat format, int64_t pad, uint64_t seed) {
  TokenizeOptions to;
  to.format = format;
  to.max_seq_len = o.max_seq_len;
  to.overlong = o.overlong;
  RewardData data;
  uint64_t source_seed = seed;
  auto add = [&](SourceCounts c, const std::vector<Ranking>& rankings, bool eval_only) {
    auto tokens = tokenize_source(rankings, o, tok, to, pad, &c);
    split_and_weight(std::move(tokens), c.weight, eval_only, o.eval_fraction,
                     source_seed++ * 1000003ULL + 11, &c, &data);
    data.sources.push_back(std::move(c));
  };
  for (const auto& s : o.sources) {
    SourceCounts c;
    c.name = s.path;
    c.weight = s.weight;
    auto rankings = read_jsonl_rankings(s.path, o.strings_as_text, o.min_strength, &c);
    add(std::move(c), rankings, false);
  }
  if (!o.store.empty()) {
    SourceCounts c;
    c.name = o.store;
    if (!o.store_rounds.empty()) {
      c.name += "#rounds=";
      for (size_t i = 0; i < o.store_rounds.size(); ++i) {
        c.name += (i ? "," : "") + std::to_string(o.store_rounds[i]);
      }
    }
    c.weight = o.store_weight;
    core::PreferenceReadOptions ro;
    ro.strings_as_chat = !o.strings_as_text;
    auto rankings = read_store_rankings(o.store, o.store_rounds, o.min_strength, ro);
    c.read = static_cast<int64_t>(rankings.size());
    if (rankings.empty()) {
      throw UsageError("store " + o.store + " has no preference pairs for the configured rounds "
                       "and data.min_strength");
    }
    add(std::move(c), rankings, false);
  }
  if (!o.eval_path.empty()) {
    SourceCounts c;
    c.name = o.eval_path;
    auto rankings = read_jsonl_rankings(o.eval_path, o.strings_as_text, o.min_strength, &c);
    add(std::move(c), rankings, true);
  }
  return data;
}

core::TrainResult run_reward(const nlohmann::json& resolved) {
  const core::TrainerOptions topts = core::trainer_options_from_config(resolved);
  const RewardDataOptions dopts = reward_data_options(resolved);
  const PairwiseLossOptions lopts = reward_loss_options(resolved);
  const core::DistEnv env = core::DistEnv::from_environment();
  const at::Device device = core::resolve_device(topts.device, env.local_rank);
  std::shared_ptr<core::DataParallel> dp;
  if (env.distributed()) dp = core::DataParallel::init(env, device);
  const bool main = env.rank == 0;

  const std::string model_dir = resolved["model"]["path"].get<std::string>();
  const std::string tok_dir = resolved["model"]["tokenizer"].is_null()
                                  ? model_dir
                                  : resolved["model"]["tokenizer"].get<std::string>();
  core::Tokenizer tok = core::Tokenizer::load_dir(tok_dir);
  if (dopts.chat_format != "auto") tok.set_chat_format(core::parse_chat_format(dopts.chat_format));
  std::optional<int64_t> pad_cfg;
  if (!resolved["model"]["pad_token_id"].is_null()) {
    pad_cfg = resolved["model"]["pad_token_id"].get<int64_t>();
  }
  const int64_t pad = reward_pad_id(tok, pad_cfg);

  RewardData data =
      build_reward_data(dopts, tok, tok.chat_format(), pad, static_cast<uint64_t>(topts.seed));
  nlohmann::json stats = nlohmann::json::array();
  for (const auto& s : data.sources) stats.push_back(s.to_json());
  const nlohmann::json data_line = {
      {"event", "data"},
      {"train_rankings", data.train.size()},
      {"train_pairs", data.train_pairs()},
      {"eval_rankings", data.eval.size()},
      {"eval_pairs", data.eval_pairs()},
      {"layout", dopts.layout == Layout::kOneRow ? "one_row" : "separate"},
      {"pad_token_id", pad},
      {"sources", stats}};
  if (main) std::cout << data_line.dump() << std::endl;
  std::vector<core::SourceLoss> losses;
  for (const auto& s : data.sources) {
    losses.push_back({s.name, s.read, s.truncated, s.dropped_long});
  }
  core::check_data_loss(losses, dopts.data_loss, "reward train", "data.max_seq_len",
                        main ? &std::cerr : nullptr);
  if (data.train.empty()) throw UsageError("no training pairs left after the filters");

  RowOptions ro;
  ro.layout = dopts.layout;
  ro.seed = static_cast<uint64_t>(topts.seed);
  ro.pad_id = pad;
  auto train_rows = std::make_shared<RankingDataset>(
      std::make_shared<const std::vector<RankedTokens>>(std::move(data.train)), ro);
  std::shared_ptr<RankingDataset> eval_rows;
  if (!data.eval.empty()) {
    RowOptions eo = ro;
    eo.shuffle = false;
    eval_rows = std::make_shared<RankingDataset>(
        std::make_shared<const std::vector<RankedTokens>>(std::move(data.eval)), eo);
  }

  core::LlamaModel model =
      load_reward_model(model_dir, pad, device, static_cast<uint64_t>(topts.seed));
  if (dp) dp->broadcast_parameters(model->parameters());
  core::Trainer trainer(
      topts, model,
      [lopts](core::LlamaModel& m, const core::MicroBatch& b) { return reward_loss(*m, b, lopts); },
      train_rows, eval_rows, dp);
  trainer.set_label("reward");
  trainer.set_rows_independent(true);  // each ranking's pairs stay inside its row
  trainer.set_run_info({{"stage", "reward"}, {"config", resolved}});
  trainer.set_data_summary(data_line);
  trainer.set_save_extra([tok](const std::string& dir) { tok.save_dir(dir); });
  core::TrainResult r = trainer.run();
  if (main) std::cout << r.summary.dump() << std::endl;
  return r;
}

}  // namespace posttrain::reward
