// The typed store API: every stage reads and writes the SQLite store through this class, so no
// SQL lives outside datastore/. A Store is one connection (not thread-safe; open one per thread
// or process). Several processes may write the same store at once: writes run in BEGIN
// IMMEDIATE transactions with busy_timeout and retry (see sqlite.h).
//
// Content (prompts, responses, dialogues) is a JSON value: either a string (shape "text") or a
// list of chat messages, each an object with a string "role" and a string "content" (extra
// keys such as "weight" or "tool_calls" are kept). It is stored as its canonical JSON (nlohmann
// dump: compact, object keys sorted, UTF-8 unescaped) and deduplicated on sha256_hex of that
// text, so a string comes back as a string and a list as a list.
//
// Every add_* call either runs in the caller's open Transaction (see transaction()) or, when
// none is open, in its own. Each validates its input before writing, so a call that throws
// InputError leaves no partial rows even inside the caller's transaction. Ids are SQLite rowids
// (int64, > 0).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "datastore/sqlite.h"

namespace posttrain::datastore {

using Json = nlohmann::json;

// ---- content --------------------------------------------------------------------------------

enum class Shape { kText, kMessages };
const char* shape_name(Shape shape);         // "text" / "messages"
Shape parse_shape(const std::string& name);  // throws UsageError on anything else

// Checks that `value` is a non-empty string or a non-empty list of messages (objects with a
// "role" among system, user, assistant, tool, ipython and a string "content", or a "tool_calls"
// entry in place of content).
// Throws InputError at `where` (field `where.field`, element paths like "chosen[1].role").
// Returns the shape.
Shape validate_content(const Json& value, const Location& where);
// Canonical JSON text of a content value (what is stored and hashed).
std::string canonical_json(const Json& value);
// sha256_hex(canonical_json(value)).
std::string content_hash(const Json& value);

// Content validated and canonicalised once, for bulk writers (importers) that hash each value
// a single time. `digest` holds the 32 raw SHA-256 bytes of `text` (hex: sha256_hex(text)).
struct Canonical {
  Shape shape = Shape::kText;
  std::string text;
  std::string digest;
};
// Validates (as validate_content) and canonicalises `value`.
Canonical canonicalize(const Json& value, const Location& where);

// ---- preference strength (Llama 3's four levels; NULL = unlabelled) --------------------------

enum class Strength {
  kSignificantlyBetter = 3,
  kBetter = 2,
  kSlightlyBetter = 1,
  kMarginallyBetter = 0
};
const char* strength_name(Strength s);  // "significantly_better", "better", ...
// Parses exactly one of the four names; std::nullopt for anything else.
std::optional<Strength> parse_strength(const std::string& name);

// ---- records ----------------------------------------------------------------------------------

struct NewResponse {
  int64_t prompt_id = 0;
  Json content;                          // string or message list (validated)
  std::optional<int64_t> checkpoint_id;  // producing checkpoint (checkpoints.id), if known
  int round = 0;
  std::optional<int64_t> token_count;
  Json sampling;              // sampling parameters object, or null
  std::string system_prompt;  // "" = none
};

enum class ScorerKind { kRewardModel, kVerifier, kAnnotator };
const char* scorer_kind_name(ScorerKind kind);  // "reward_model" / "verifier" / "annotator"

struct NewScore {
  int64_t response_id = 0;
  ScorerKind kind = ScorerKind::kRewardModel;
  std::string scorer;  // RM checkpoint path, verifier name or annotator id (non-empty)
  double value = 0;
  Json details;  // any JSON, or null
  int round = 0;
};

struct NewPair {
  int64_t prompt_id = 0;
  int64_t chosen_id = 0;             // responses.id, must belong to prompt_id
  int64_t rejected_id = 0;           // responses.id, != chosen_id
  std::optional<int64_t> edited_id;  // annotator's edit of chosen; ranks above chosen
  std::optional<Strength> strength;
  std::string source;
  std::string annotator;  // "" = none
  int round = 0;
};

// A stored pair with its content (content fields are null when fetched without content).
struct Pair {
  int64_t id = 0;
  int64_t prompt_id = 0, chosen_id = 0, rejected_id = 0;
  std::optional<int64_t> edited_id;
  std::optional<Strength> strength;
  std::string source, annotator;
  int round = 0;
  Json prompt, chosen, rejected, edited;
};

struct PairFilter {
  std::optional<int64_t> id;
  std::vector<int> rounds;  // empty = every round
  // Keeps pairs at least this strong, and unlabelled pairs (Llama 3 kept the top two levels
  // plus unlabelled data: min_strength = kBetter). Unset = no strength filter.
  std::optional<Strength> min_strength;
  std::optional<std::string> source;
  std::optional<std::string> annotator;
  int64_t limit = -1;  // < 0: no limit
  bool with_content = true;
};

struct SyntheticProblem {
  std::string kind;  // "math", "code", "tool", ... (non-empty)
  Json spec;         // the problem as the generator made it (any JSON but null)
  Json checker;      // what checks an answer: expected value, unit tests, tool spec (or null)
  int round = 0;
  std::string source;
};

struct SyntheticAttempt {
  int64_t problem_id = 0;
  int attempt = 0;        // 0-based number within the problem's correction chain
  std::string candidate;  // the model's answer / program
  std::string verdict;    // "pass", "fail", "error", "timeout", ... (non-empty)
  std::string feedback;   // what the checker said (fed back for self-correction)
  std::optional<int64_t> response_id;
};

struct StoredAttempt : SyntheticAttempt {
  int64_t id = 0;
};

struct KeptDialogue {
  Json messages;                      // message list (validated)
  std::optional<int64_t> problem_id;  // synthetic problem it solves, if any
  std::string source;
  int round = 0;
};

struct Dialogue {
  int64_t id = 0;
  Json messages;
  std::optional<int64_t> problem_id;
  std::string source;
  int round = 0;
};

enum class SampleKind { kResponse, kDialogue };

// One SFT sample chosen for a round, as chat messages: a selected response becomes
// [system (when set)] + prompt (a string prompt becomes one user message) + response (a string
// response becomes one assistant message); a selected dialogue is its messages.
struct SelectedSample {
  SampleKind kind = SampleKind::kResponse;
  int64_t id = 0;  // responses.id or dialogues.id
  Json messages;
  std::string reason;
};

// Reference-model log-probs of one pair, summed over the response tokens.
struct RefLogprobs {
  double chosen = 0;
  double rejected = 0;
  int64_t chosen_tokens = 0;
  int64_t rejected_tokens = 0;
};

struct Checkpoint {
  int64_t id = 0;
  std::string path;
  std::string stage;  // "sft", "dpo", "reward", "average", "init", ...
  int round = 0;
  std::vector<int64_t> parents;  // in insertion order
  std::vector<double> weights;   // same length as parents (1.0 when not given)
};

struct Eval {
  int64_t id = 0;
  std::optional<int64_t> checkpoint_id;
  int round = 0;
  std::string name;
  double value = 0;
  Json details;
};

struct Metric {
  int64_t step = 0;
  std::string name;
  double value = 0;
};

// Row counts for `posttrain store stats`.
struct Stats {
  std::map<std::string, int64_t> tables;  // table name -> rows
  std::map<int, int64_t> pairs_by_round;
  std::map<std::string, int64_t> pairs_by_source;
  std::map<std::string, int64_t> pairs_by_strength;  // "unlabelled" for NULL
};

// ---- the store --------------------------------------------------------------------------------

class Store {
 public:
  struct Options {
    bool read_only = false;  // open an existing store for reading only (no migration)
    int busy_timeout_ms = 10000;
    int64_t cache_kib = 65536;  // SQLite page cache per connection
  };

  // Opens (creating when missing) and migrates the store at `path` to the current schema.
  // Throws UsageError when the store was written by a newer posttrain (schema version above
  // kSchemaVersion) or the file is not a posttrain store; IoError when it cannot be opened.
  static Store open(const std::string& path);
  static Store open(const std::string& path, const Options& options);
  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;
  ~Store();

  int schema_version();
  Database& db() { return *db_; }

  // A write transaction (BEGIN IMMEDIATE with retry); call commit() on it, otherwise it rolls
  // back when destroyed. add_* calls made while it lives join it. Batch many writes in one.
  Transaction transaction();

  // Runs and rounds. ensure_run returns the id of the run named `name`, creating it.
  int64_t ensure_run(const std::string& name, const Json& config = nullptr);
  // Records that `stage` of `round` finished in `run_id` (idempotent), for resumable recipes.
  void mark_stage_done(int64_t run_id, int round, const std::string& stage);
  bool stage_done(int64_t run_id, int round, const std::string& stage);

  // Prompts: deduplicated on content hash; returns the existing id for a known prompt (its
  // source/tags stay as first stored). Throws InputError on invalid content.
  int64_t add_prompt(const Json& content, const std::string& source = "",
                     const std::vector<std::string>& tags = {});
  int64_t add_prompt(const Canonical& content, const std::string& source = "",
                     const std::vector<std::string>& tags = {});
  std::optional<int64_t> find_prompt(const Json& content);
  Json prompt_content(int64_t prompt_id);
  // All prompt ids (ascending), optionally only those from `source`.
  std::vector<int64_t> prompt_ids(const std::optional<std::string>& source = std::nullopt);

  // Responses: deduplicated on (prompt, content hash); a known response keeps its first
  // producer/round and its id is returned.
  int64_t add_response(const NewResponse& response);
  // As above with the content already canonicalised (response.content is ignored).
  int64_t add_response(const NewResponse& response, const Canonical& content);
  Json response_content(int64_t response_id);
  std::vector<int64_t> responses_of(int64_t prompt_id);
  // The prompt a response answers; InputError (field response_id) for an unknown response.
  int64_t prompt_of(int64_t response_id);

  int64_t add_score(const NewScore& score);
  // Scores of a response, optionally of one kind, in insertion order: (scorer, value).
  std::vector<std::pair<std::string, double>> scores_of(
      int64_t response_id, std::optional<ScorerKind> kind = std::nullopt);

  // Preference pairs, unique on (prompt, chosen, rejected). Returns the pair's id and whether
  // it was new (false: the existing pair is kept unchanged). Throws InputError when chosen ==
  // rejected or a response belongs to another prompt.
  std::pair<int64_t, bool> add_pair(const NewPair& pair);
  // Pairs matching `filter`, ordered by id.
  std::vector<Pair> pairs(const PairFilter& filter = {});
  // Streams matching pairs ordered by id without holding them all in memory.
  void for_each_pair(const PairFilter& filter, const std::function<void(const Pair&)>& fn);
  std::optional<Pair> pair(int64_t id);
  int64_t count_pairs();

  // Synthetic-data provenance. Problems are deduplicated on (kind, spec).
  int64_t add_synthetic_problem(const SyntheticProblem& problem);
  int64_t add_synthetic_attempt(const SyntheticAttempt& attempt);
  std::vector<StoredAttempt> synthetic_attempts(int64_t problem_id);  // by attempt, then id
  // Dialogues (SFT conversations, kept synthetic dialogues): deduplicated on content hash.
  int64_t add_kept_dialogue(const KeptDialogue& dialogue);
  // As above, also saying whether the dialogue was new.
  std::pair<int64_t, bool> add_dialogue(const KeptDialogue& dialogue);
  std::vector<Dialogue> dialogues(const std::vector<int>& rounds = {},
                                  const std::optional<std::string>& source = std::nullopt);

  // Selections: which responses/dialogues are round `round`'s SFT data (idempotent).
  void add_selection(int round, SampleKind kind, int64_t id, const std::string& reason = "");
  std::vector<SelectedSample> selected_samples(int round);  // in selection order

  // Reference log-probs cache, keyed by pair, reference checkpoint (path or name) and a hash of
  // every setting that changes the tokens (tokenizer, chat template, truncation, masking):
  // a different settings_hash never returns a stale value. put replaces.
  void put_ref_logprobs(int64_t pair_id, const std::string& reference,
                        const std::string& settings_hash, const RefLogprobs& values);
  std::optional<RefLogprobs> get_ref_logprobs(int64_t pair_id, const std::string& reference,
                                              const std::string& settings_hash);
  // Every cached value for (reference, settings_hash): pair id -> log-probs.
  std::map<int64_t, RefLogprobs> ref_logprobs_for(const std::string& reference,
                                                  const std::string& settings_hash);

  // Checkpoints with lineage. Unique on path: adding a known path returns its id unchanged.
  // parents: checkpoint ids (an averaged checkpoint names what it averaged); weights empty or
  // the same length as parents. Throws InputError for an unknown parent.
  int64_t add_checkpoint(const std::string& path, const std::string& stage, int round,
                         const std::vector<int64_t>& parents = {},
                         const std::vector<double>& weights = {});
  std::optional<Checkpoint> checkpoint(int64_t id);
  std::optional<Checkpoint> checkpoint_by_path(const std::string& path);
  std::vector<Checkpoint> checkpoints(const std::optional<std::string>& stage = std::nullopt);

  int64_t add_eval(std::optional<int64_t> checkpoint_id, int round, const std::string& name,
                   double value, const Json& details = nullptr);
  std::vector<Eval> evals(const std::optional<std::string>& name = std::nullopt);

  // Per-step training metrics; (run, step, name) is unique and a repeat overwrites the value.
  void add_metric(int64_t run_id, int64_t step, const std::string& name, double value);
  std::vector<Metric> metrics(int64_t run_id,
                              const std::optional<std::string>& name = std::nullopt);

  Stats stats();
  // PRAGMA integrity_check: "ok" or SQLite's first problem.
  std::string integrity_check();

 private:
  explicit Store(std::unique_ptr<Database> db);
  struct Cache;  // prepared statements, created on first use
  Statement& stmt(int key, const char* sql);

  std::unique_ptr<Database> db_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace posttrain::datastore
