// The typed store (see store.h). Each method prepares its statement once per connection
// (Store::stmt) and reuses it; multi-statement writes run in one Transaction, which joins the
// caller's transaction when one is open.
#include "datastore/store.h"

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "common/jsonl.h"
#include "common/sha256.h"
#include "datastore/internal.h"
#include "datastore/schema.h"

namespace posttrain::datastore {

// ---- content ----------------------------------------------------------------------------------

const char* shape_name(Shape shape) { return shape == Shape::kText ? "text" : "messages"; }

Shape parse_shape(const std::string& name) {
  if (name == "text") return Shape::kText;
  if (name == "messages") return Shape::kMessages;
  throw UsageError("unknown shape '" + name + "' (expected text or messages)");
}

namespace {

Location at_field(const Location& where, const std::string& field) {
  Location at = where;
  at.field = field;
  return at;
}

}  // namespace

Shape validate_content(const Json& value, const Location& where) {
  const std::string& f = where.field;
  if (value.is_string()) {
    if (value.get_ref<const std::string&>().empty()) throw InputError(where, "empty string");
    return Shape::kText;
  }
  if (!value.is_array()) {
    throw InputError(where, std::string("expected a string or a list of messages, got ") +
                                (value.is_null() ? "null" : value.type_name()));
  }
  if (value.empty()) throw InputError(where, "empty list of messages");
  for (size_t i = 0; i < value.size(); ++i) {
    const Json& m = value[i];
    std::string mf = f + "[" + std::to_string(i) + "]";
    if (!m.is_object()) {
      throw InputError(at_field(where, mf),
                       std::string("expected a message object, got ") + m.type_name());
    }
    auto role = m.find("role");
    if (role == m.end() || !role->is_string() || role->get_ref<const std::string&>().empty()) {
      throw InputError(at_field(where, mf + ".role"),
                       role == m.end() ? "missing" : "expected a non-empty string");
    }
    // The chat templates' roles (core/tokenizer/chat_template.h): a typo is refused here, before
    // it is stored, rather than when a stage renders it.
    const std::string& r = role->get_ref<const std::string&>();
    if (r != "system" && r != "user" && r != "assistant" && r != "tool" && r != "ipython") {
      throw InputError(at_field(where, mf + ".role"),
                       "unknown role '" + r + "' (expected system, user, assistant, tool or ipython)");
    }
    auto content = m.find("content");
    bool has_tools = m.contains("tool_calls");
    if (content == m.end() || content->is_null()) {
      if (!has_tools) throw InputError(at_field(where, mf + ".content"), "missing");
    } else if (!content->is_string()) {
      throw InputError(at_field(where, mf + ".content"),
                       std::string("expected a string, got ") + content->type_name());
    }
  }
  return Shape::kMessages;
}

namespace {

// nlohmann's dump() of a string, written in runs instead of byte by byte: '"' and '\\' and the
// control characters are escaped (\b \f \n \r \t, others as lower-case \u00xx), everything
// else (UTF-8 included) is copied. Returns false when `s` is not valid UTF-8.
bool dump_string(const std::string& s, std::string* out) {
  if (!is_valid_utf8(s)) return false;
  out->clear();
  out->reserve(s.size() + 2);
  out->push_back('"');
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default: {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "\\u%04x", c);
        out->append(buf);
      }
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
  return true;
}

}  // namespace

std::string canonical_json(const Json& value) {
  std::string out;
  if (value.is_string()) {
    if (!dump_string(value.get_ref<const std::string&>(), &out)) {
      throw InputError(Location{}, "content is not valid UTF-8");
    }
    return out;
  }
  try {
    return value.dump();
  } catch (const Json::type_error& e) {
    throw InputError(Location{}, std::string("content is not valid UTF-8 (") + e.what() + ")");
  }
}

std::string content_hash(const Json& value) {
  return sha256_hex(canonical_json(value));
}

Canonical canonicalize(const Json& value, const Location& where) {
  Canonical c;
  c.shape = validate_content(value, where);
  try {
    c.text = canonical_json(value);
  } catch (const InputError&) {
    throw InputError(where, "not valid UTF-8");
  }
  c.digest = sha256_digest(c.text);
  return c;
}

// ---- enums ------------------------------------------------------------------------------------

const char* strength_name(Strength s) {
  switch (s) {
    case Strength::kSignificantlyBetter:
      return "significantly_better";
    case Strength::kBetter:
      return "better";
    case Strength::kSlightlyBetter:
      return "slightly_better";
    case Strength::kMarginallyBetter:
      return "marginally_better";
  }
  return "?";
}

std::optional<Strength> parse_strength(const std::string& name) {
  for (Strength s : {Strength::kSignificantlyBetter, Strength::kBetter, Strength::kSlightlyBetter,
                     Strength::kMarginallyBetter}) {
    if (name == strength_name(s)) return s;
  }
  return std::nullopt;
}

const char* scorer_kind_name(ScorerKind kind) {
  switch (kind) {
    case ScorerKind::kRewardModel:
      return "reward_model";
    case ScorerKind::kVerifier:
      return "verifier";
    case ScorerKind::kAnnotator:
      return "annotator";
  }
  return "?";
}

// ---- open -------------------------------------------------------------------------------------

namespace {

// Statement keys for Store::stmt.
enum StmtKey {
  kInsRun,
  kSelRun,
  kInsStage,
  kSelStage,
  kInsPrompt,
  kSelPrompt,
  kSelPromptBody,
  kInsResponse,
  kSelResponse,
  kSelResponseBody,
  kSelResponsesOf,
  kInsScore,
  kInsPair,
  kSelPair,
  kCountPairs,
  kInsProblem,
  kSelProblem,
  kInsAttempt,
  kSelAttempts,
  kInsDialogue,
  kSelDialogue,
  kInsSelection,
  kSelSelected,
  kPutRef,
  kGetRef,
  kAllRef,
  kInsCheckpoint,
  kSelCheckpointPath,
  kInsParent,
  kSelCheckpoint,
  kSelParents,
  kInsEval,
  kInsMetric,
  kNumStmts
};

// Retries `fn` while SQLite reports BUSY (used for PRAGMA journal_mode, which takes an
// exclusive lock and may race with other processes opening the same new store).
template <typename Fn>
void retry_busy(Fn fn) {
  for (int attempt = 0;; ++attempt) {
    try {
      fn();
      return;
    } catch (const DbError& e) {
      if ((e.code() & 0xff) != 5 /*SQLITE_BUSY*/ || attempt > 2000) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
}

std::optional<std::string> json_or_null(const Json& v) {
  if (v.is_null()) return std::nullopt;
  return canonical_json(v);
}

Json parse_stored(std::string_view text) { return Json::parse(text); }

}  // namespace

struct Store::Cache {
  std::array<std::unique_ptr<Statement>, kNumStmts> stmts;
};

Store::Store(std::unique_ptr<Database> db) : db_(std::move(db)), cache_(new Cache) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

Store Store::open(const std::string& path) { return open(path, Options{}); }

Store Store::open(const std::string& path, const Options& options) {
  Database::Options dbo;
  dbo.read_only = false;
  dbo.create = !options.read_only;
  dbo.busy_timeout_ms = options.busy_timeout_ms;
  auto db = std::make_unique<Database>(path, dbo);
  db->exec("PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -" +
           std::to_string(options.cache_kib));
  if (options.read_only) {
    int v = datastore::schema_version(*db);
    if (v != kSchemaVersion) {
      if (v > kSchemaVersion) migrate(*db);  // throws the "newer posttrain" error
      if (v == 0) {
        throw UsageError("store " + path + " holds no posttrain store (an empty or foreign "
                         "SQLite file); create one with `posttrain store init`");
      }
      throw UsageError("store " + path + " is at schema version " + std::to_string(v) +
                       "; open it for writing once to migrate it");
    }
    db->exec("PRAGMA query_only = ON");
  } else {
    retry_busy([&] { db->exec("PRAGMA journal_mode = WAL"); });
    // WAL + NORMAL: a commit survives a process crash; only an OS crash may lose the last
    // transactions, never corrupt the file.
    db->exec("PRAGMA synchronous = NORMAL");
    migrate(*db);
  }
  return Store(std::move(db));
}

int Store::schema_version() { return datastore::schema_version(*db_); }

Transaction Store::transaction() { return Transaction(*db_); }

Statement& Store::stmt(int key, const char* sql) {
  auto& slot = cache_->stmts[key];
  if (!slot) slot = std::make_unique<Statement>(*db_, sql);
  return slot->reset();
}

// ---- runs -------------------------------------------------------------------------------------

int64_t Store::ensure_run(const std::string& name, const Json& config) {
  if (name.empty()) throw InputError(Location{"", 0, "run"}, "empty run name");
  Transaction tx(*db_);
  auto cfg = json_or_null(config);
  stmt(kInsRun, "INSERT INTO runs(name, config) VALUES (?, ?) ON CONFLICT(name) DO NOTHING")
      .bind(1, name)
      .bind(2, cfg)
      .run();
  auto& s = stmt(kSelRun, "SELECT id FROM runs WHERE name = ?").bind(1, name);
  s.step();
  int64_t id = s.column_int(0);
  s.reset();
  tx.commit();
  return id;
}

void Store::mark_stage_done(int64_t run_id, int round, const std::string& stage) {
  Transaction tx(*db_);
  stmt(kInsStage, "INSERT OR IGNORE INTO run_stages(run_id, round, stage) VALUES (?, ?, ?)")
      .bind(1, run_id)
      .bind(2, round)
      .bind(3, stage)
      .run();
  tx.commit();
}

bool Store::stage_done(int64_t run_id, int round, const std::string& stage) {
  auto& s = stmt(kSelStage, "SELECT 1 FROM run_stages WHERE run_id = ? AND round = ? AND stage = ?")
                .bind(1, run_id)
                .bind(2, round)
                .bind(3, stage);
  bool found = s.step();
  s.reset();
  return found;
}

// ---- prompts and responses --------------------------------------------------------------------

int64_t Store::add_prompt(const Json& content, const std::string& source,
                          const std::vector<std::string>& tags) {
  return add_prompt(canonicalize(content, Location{"", 0, "prompt"}), source, tags);
}

int64_t Store::add_prompt(const Canonical& c, const std::string& source,
                          const std::vector<std::string>& tags) {
  Transaction tx(*db_);
  std::optional<std::string> tag_json;
  if (!tags.empty()) tag_json = Json(tags).dump();
  stmt(kInsPrompt,
       "INSERT INTO prompts(hash, shape, body, source, tags) VALUES (?, ?, ?, ?, ?)"
       " ON CONFLICT(hash) DO NOTHING")
      .bind_blob(1, c.digest)
      .bind(2, shape_name(c.shape))
      .bind(3, c.text)
      .bind(4, source)
      .bind(5, tag_json)
      .run();
  int64_t id;
  if (db_->changes() == 1) {
    id = db_->last_insert_rowid();
  } else {
    auto& s = stmt(kSelPrompt, "SELECT id FROM prompts WHERE hash = ?").bind_blob(1, c.digest);
    s.step();
    id = s.column_int(0);
    s.reset();
  }
  tx.commit();
  return id;
}

std::optional<int64_t> Store::find_prompt(const Json& content) {
  Canonical c = canonicalize(content, Location{"", 0, "prompt"});
  auto& s = stmt(kSelPrompt, "SELECT id FROM prompts WHERE hash = ?").bind_blob(1, c.digest);
  std::optional<int64_t> id;
  if (s.step()) id = s.column_int(0);
  s.reset();
  return id;
}

Json Store::prompt_content(int64_t prompt_id) {
  auto& s = stmt(kSelPromptBody, "SELECT body FROM prompts WHERE id = ?").bind(1, prompt_id);
  if (!s.step())
    throw InputError(Location{"", 0, "prompt_id"}, "no prompt " + std::to_string(prompt_id));
  Json v = parse_stored(s.column_view(0));
  s.reset();
  return v;
}

std::vector<int64_t> Store::prompt_ids(const std::optional<std::string>& source) {
  Statement s(*db_, source ? "SELECT id FROM prompts WHERE source = ? ORDER BY id"
                           : "SELECT id FROM prompts ORDER BY id");
  if (source) s.bind(1, *source);
  std::vector<int64_t> ids;
  while (s.step()) ids.push_back(s.column_int(0));
  return ids;
}

int64_t Store::add_response(const NewResponse& r) {
  return add_response(r, canonicalize(r.content, Location{"", 0, "response"}));
}

int64_t Store::add_response(const NewResponse& r, const Canonical& c) {
  Transaction tx(*db_);
  auto sampling = json_or_null(r.sampling);
  std::optional<std::string> system;
  if (!r.system_prompt.empty()) system = r.system_prompt;
  try {
    stmt(kInsResponse,
         "INSERT INTO responses(prompt_id, hash, shape, body, checkpoint_id, round, token_count,"
         " sampling, system_prompt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
         " ON CONFLICT(prompt_id, hash) DO NOTHING")
        .bind(1, r.prompt_id)
        .bind_blob(2, c.digest)
        .bind(3, shape_name(c.shape))
        .bind(4, c.text)
        .bind(5, r.checkpoint_id)
        .bind(6, r.round)
        .bind(7, r.token_count)
        .bind(8, sampling)
        .bind(9, system)
        .run();
  } catch (const DbError& e) {
    if (e.code() == 787 /*SQLITE_CONSTRAINT_FOREIGNKEY*/) {
      throw InputError(Location{"", 0, "prompt_id"},
                       "unknown prompt " + std::to_string(r.prompt_id) + " or checkpoint");
    }
    throw;
  }
  int64_t id;
  if (db_->changes() == 1) {
    id = db_->last_insert_rowid();
  } else {
    auto& s = stmt(kSelResponse, "SELECT id FROM responses WHERE prompt_id = ? AND hash = ?")
                  .bind(1, r.prompt_id)
                  .bind_blob(2, c.digest);
    s.step();
    id = s.column_int(0);
    s.reset();
  }
  tx.commit();
  return id;
}

Json Store::response_content(int64_t response_id) {
  auto& s = stmt(kSelResponseBody, "SELECT body FROM responses WHERE id = ?").bind(1, response_id);
  if (!s.step()) {
    throw InputError(Location{"", 0, "response_id"}, "no response " + std::to_string(response_id));
  }
  Json v = parse_stored(s.column_view(0));
  s.reset();
  return v;
}

std::vector<int64_t> Store::responses_of(int64_t prompt_id) {
  auto& s = stmt(kSelResponsesOf, "SELECT id FROM responses WHERE prompt_id = ? ORDER BY id")
                .bind(1, prompt_id);
  std::vector<int64_t> ids;
  while (s.step()) ids.push_back(s.column_int(0));
  return ids;
}

int64_t Store::prompt_of(int64_t response_id) {
  Statement s(*db_, "SELECT prompt_id FROM responses WHERE id = ?");
  s.bind(1, response_id);
  if (!s.step()) {
    throw InputError(Location{"", 0, "response_id"}, "no response " + std::to_string(response_id));
  }
  return s.column_int(0);
}

int64_t Store::add_score(const NewScore& sc) {
  if (sc.scorer.empty()) throw InputError(Location{"", 0, "scorer"}, "empty scorer id");
  Transaction tx(*db_);
  auto details = json_or_null(sc.details);
  try {
    stmt(kInsScore,
         "INSERT INTO scores(response_id, scorer_kind, scorer, value, details, round)"
         " VALUES (?, ?, ?, ?, ?, ?)")
        .bind(1, sc.response_id)
        .bind(2, scorer_kind_name(sc.kind))
        .bind(3, sc.scorer)
        .bind(4, sc.value)
        .bind(5, details)
        .bind(6, sc.round)
        .run();
  } catch (const DbError& e) {
    if (e.code() == 787) {
      throw InputError(Location{"", 0, "response_id"},
                       "unknown response " + std::to_string(sc.response_id));
    }
    throw;
  }
  int64_t id = db_->last_insert_rowid();
  tx.commit();
  return id;
}

std::vector<std::pair<std::string, double>> Store::scores_of(int64_t response_id,
                                                             std::optional<ScorerKind> kind) {
  Statement s(*db_, kind ? "SELECT scorer, value FROM scores WHERE response_id = ? AND "
                           "scorer_kind = ? ORDER BY id"
                         : "SELECT scorer, value FROM scores WHERE response_id = ? ORDER BY id");
  s.bind(1, response_id);
  if (kind) s.bind(2, scorer_kind_name(*kind));
  std::vector<std::pair<std::string, double>> out;
  while (s.step()) out.emplace_back(s.column_text(0), s.column_double(1));
  return out;
}

// ---- pairs ------------------------------------------------------------------------------------

std::pair<int64_t, bool> Store::add_pair(const NewPair& p) {
  if (p.chosen_id == p.rejected_id) {
    throw InputError(Location{"", 0, "rejected"}, "chosen and rejected are the same response");
  }
  Transaction tx(*db_);
  std::optional<std::string> strength, annotator;
  if (p.strength) strength = strength_name(*p.strength);
  if (!p.annotator.empty()) annotator = p.annotator;
  auto edited = p.edited_id;
  if (edited && (*edited == p.chosen_id)) edited.reset();  // an unchanged edit is no edit
  try {
    stmt(kInsPair,
         "INSERT INTO preference_pairs(prompt_id, chosen_id, rejected_id, edited_id, strength,"
         " source, annotator, round) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
         " ON CONFLICT(prompt_id, chosen_id, rejected_id) DO NOTHING")
        .bind(1, p.prompt_id)
        .bind(2, p.chosen_id)
        .bind(3, p.rejected_id)
        .bind(4, edited)
        .bind(5, strength)
        .bind(6, p.source)
        .bind(7, annotator)
        .bind(8, p.round)
        .run();
  } catch (const DbError& e) {
    if (e.code() == 787) {
      throw InputError(Location{"", 0, "prompt_id"},
                       "a response of the pair does not exist or answers another prompt");
    }
    throw;
  }
  std::pair<int64_t, bool> out;
  if (db_->changes() == 1) {
    out = {db_->last_insert_rowid(), true};
  } else {
    auto& s = stmt(kSelPair,
                   "SELECT id FROM preference_pairs WHERE prompt_id = ? AND chosen_id = ? AND"
                   " rejected_id = ?")
                  .bind(1, p.prompt_id)
                  .bind(2, p.chosen_id)
                  .bind(3, p.rejected_id);
    s.step();
    out = {s.column_int(0), false};
    s.reset();
  }
  tx.commit();
  return out;
}

namespace internal {

std::string pair_query_sql(const PairFilter& f) {
  std::string sql =
      "SELECT p.id, p.prompt_id, p.chosen_id, p.rejected_id, p.edited_id, p.strength, p.source,"
      " p.annotator, p.round";
  if (f.with_content) {
    sql +=
        ", pr.body, c.body, r.body, e.body, pr.shape, c.shape, r.shape, e.shape"
        " FROM preference_pairs p JOIN prompts pr ON pr.id = p.prompt_id"
        " JOIN responses c ON c.id = p.chosen_id JOIN responses r ON r.id = p.rejected_id"
        " LEFT JOIN responses e ON e.id = p.edited_id";
  } else {
    sql += " FROM preference_pairs p";
  }
  sql += " WHERE 1";
  if (f.id) sql += " AND p.id = ?";
  if (!f.rounds.empty()) {
    sql += " AND p.round IN (";
    for (size_t i = 0; i < f.rounds.size(); ++i) sql += i ? ", ?" : "?";
    sql += ")";
  }
  if (f.min_strength) {
    sql += " AND (p.strength IS NULL OR p.strength IN (";
    bool first = true;
    for (int s = static_cast<int>(*f.min_strength); s <= 3; ++s) {
      sql += first ? "" : ", ";
      sql += "'" + std::string(strength_name(static_cast<Strength>(s))) + "'";
      first = false;
    }
    sql += "))";
  }
  if (f.source) sql += " AND p.source = ?";
  if (f.annotator) sql += " AND p.annotator = ?";
  sql += " ORDER BY p.id";
  if (f.limit >= 0) sql += " LIMIT ?";
  return sql;
}

void bind_pair_filter(Statement& s, const PairFilter& f) {
  int i = 1;
  if (f.id) s.bind(i++, *f.id);
  for (int r : f.rounds) s.bind(i++, r);
  if (f.source) s.bind(i++, *f.source);
  if (f.annotator) s.bind(i++, *f.annotator);
  if (f.limit >= 0) s.bind(i++, f.limit);
}

Pair read_pair(const Statement& s, bool with_content) {
  Pair p;
  p.id = s.column_int(0);
  p.prompt_id = s.column_int(1);
  p.chosen_id = s.column_int(2);
  p.rejected_id = s.column_int(3);
  p.edited_id = s.column_opt_int(4);
  if (!s.column_is_null(5)) p.strength = parse_strength(s.column_text(5));
  p.source = s.column_text(6);
  p.annotator = s.column_text(7);
  p.round = static_cast<int>(s.column_int(8));
  if (with_content) {
    p.prompt = parse_stored(s.column_view(9));
    p.chosen = parse_stored(s.column_view(10));
    p.rejected = parse_stored(s.column_view(11));
    if (!s.column_is_null(12)) p.edited = parse_stored(s.column_view(12));
  }
  return p;
}

std::string dialogue_query_sql(const std::vector<int>& rounds,
                               const std::optional<std::string>& source) {
  std::string sql = "SELECT id, body, problem_id, source, round FROM dialogues WHERE 1";
  if (!rounds.empty()) {
    sql += " AND round IN (";
    for (size_t i = 0; i < rounds.size(); ++i) sql += i ? ", ?" : "?";
    sql += ")";
  }
  if (source) sql += " AND source = ?";
  return sql + " ORDER BY id";
}

void bind_dialogue_filter(Statement& s, const std::vector<int>& rounds,
                          const std::optional<std::string>& source) {
  int i = 1;
  for (int r : rounds) s.bind(i++, r);
  if (source) s.bind(i++, *source);
}

}  // namespace internal

void Store::for_each_pair(const PairFilter& filter, const std::function<void(const Pair&)>& fn) {
  Statement s(*db_, internal::pair_query_sql(filter));
  internal::bind_pair_filter(s, filter);
  while (s.step()) fn(internal::read_pair(s, filter.with_content));
}

std::vector<Pair> Store::pairs(const PairFilter& filter) {
  std::vector<Pair> out;
  for_each_pair(filter, [&](const Pair& p) { out.push_back(p); });
  return out;
}

std::optional<Pair> Store::pair(int64_t id) {
  PairFilter f;
  f.id = id;
  auto found = pairs(f);
  if (found.empty()) return std::nullopt;
  return found.front();
}

int64_t Store::count_pairs() {
  auto& s = stmt(kCountPairs, "SELECT count(*) FROM preference_pairs");
  s.step();
  int64_t n = s.column_int(0);
  s.reset();
  return n;
}

// ---- synthetic provenance and dialogues -------------------------------------------------------

int64_t Store::add_synthetic_problem(const SyntheticProblem& p) {
  if (p.kind.empty()) throw InputError(Location{"", 0, "kind"}, "empty problem kind");
  if (p.spec.is_null()) throw InputError(Location{"", 0, "spec"}, "missing problem spec");
  std::string spec = canonical_json(p.spec);
  std::string key = sha256_digest(canonical_json(Json::array({p.kind, p.spec})));
  auto checker = json_or_null(p.checker);
  Transaction tx(*db_);
  stmt(kInsProblem,
       "INSERT INTO synthetic_problems(hash, kind, spec, checker, round, source)"
       " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(hash) DO NOTHING")
      .bind_blob(1, key)
      .bind(2, p.kind)
      .bind(3, spec)
      .bind(4, checker)
      .bind(5, p.round)
      .bind(6, p.source)
      .run();
  int64_t id;
  if (db_->changes() == 1) {
    id = db_->last_insert_rowid();
  } else {
    auto& s =
        stmt(kSelProblem, "SELECT id FROM synthetic_problems WHERE hash = ?").bind_blob(1, key);
    s.step();
    id = s.column_int(0);
    s.reset();
  }
  tx.commit();
  return id;
}

int64_t Store::add_synthetic_attempt(const SyntheticAttempt& a) {
  if (a.verdict.empty()) throw InputError(Location{"", 0, "verdict"}, "empty verdict");
  Transaction tx(*db_);
  try {
    stmt(kInsAttempt,
         "INSERT INTO synthetic_attempts(problem_id, attempt, candidate, verdict, feedback,"
         " response_id) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(1, a.problem_id)
        .bind(2, a.attempt)
        .bind(3, a.candidate)
        .bind(4, a.verdict)
        .bind(5, a.feedback)
        .bind(6, a.response_id)
        .run();
  } catch (const DbError& e) {
    if (e.code() == 787) {
      throw InputError(Location{"", 0, "problem_id"},
                       "unknown problem " + std::to_string(a.problem_id) + " or response");
    }
    throw;
  }
  int64_t id = db_->last_insert_rowid();
  tx.commit();
  return id;
}

std::vector<StoredAttempt> Store::synthetic_attempts(int64_t problem_id) {
  auto& s = stmt(kSelAttempts,
                 "SELECT id, attempt, candidate, verdict, feedback, response_id FROM"
                 " synthetic_attempts WHERE problem_id = ? ORDER BY attempt, id")
                .bind(1, problem_id);
  std::vector<StoredAttempt> out;
  while (s.step()) {
    StoredAttempt a;
    a.id = s.column_int(0);
    a.problem_id = problem_id;
    a.attempt = static_cast<int>(s.column_int(1));
    a.candidate = s.column_text(2);
    a.verdict = s.column_text(3);
    a.feedback = s.column_text(4);
    a.response_id = s.column_opt_int(5);
    out.push_back(std::move(a));
  }
  return out;
}

int64_t Store::add_kept_dialogue(const KeptDialogue& d) { return add_dialogue(d).first; }

std::pair<int64_t, bool> Store::add_dialogue(const KeptDialogue& d) {
  Canonical c = canonicalize(d.messages, Location{"", 0, "messages"});
  if (c.shape != Shape::kMessages) {
    throw InputError(Location{"", 0, "messages"}, "expected a list of messages, got a string");
  }
  Transaction tx(*db_);
  try {
    stmt(kInsDialogue,
         "INSERT INTO dialogues(hash, body, problem_id, source, round) VALUES (?, ?, ?, ?, ?)"
         " ON CONFLICT(hash) DO NOTHING")
        .bind_blob(1, c.digest)
        .bind(2, c.text)
        .bind(3, d.problem_id)
        .bind(4, d.source)
        .bind(5, d.round)
        .run();
  } catch (const DbError& e) {
    if (e.code() == 787) throw InputError(Location{"", 0, "problem_id"}, "unknown problem");
    throw;
  }
  std::pair<int64_t, bool> out;
  if (db_->changes() == 1) {
    out = {db_->last_insert_rowid(), true};
  } else {
    auto& s = stmt(kSelDialogue, "SELECT id FROM dialogues WHERE hash = ?").bind_blob(1, c.digest);
    s.step();
    out = {s.column_int(0), false};
    s.reset();
  }
  tx.commit();
  return out;
}

std::vector<Dialogue> Store::dialogues(const std::vector<int>& rounds,
                                       const std::optional<std::string>& source) {
  Statement s(*db_, internal::dialogue_query_sql(rounds, source));
  internal::bind_dialogue_filter(s, rounds, source);
  std::vector<Dialogue> out;
  while (s.step()) {
    Dialogue d;
    d.id = s.column_int(0);
    d.messages = parse_stored(s.column_view(1));
    d.problem_id = s.column_opt_int(2);
    d.source = s.column_text(3);
    d.round = static_cast<int>(s.column_int(4));
    out.push_back(std::move(d));
  }
  return out;
}

// ---- selections -------------------------------------------------------------------------------

void Store::add_selection(int round, SampleKind kind, int64_t id, const std::string& reason) {
  Transaction tx(*db_);
  auto& s = stmt(kInsSelection,
                 "INSERT OR IGNORE INTO selections(round, response_id, dialogue_id, reason)"
                 " VALUES (?, ?, ?, ?)");
  s.bind(1, round);
  if (kind == SampleKind::kResponse) {
    s.bind(2, id).bind_null(3);
  } else {
    s.bind_null(2).bind(3, id);
  }
  s.bind(4, reason);
  try {
    s.run();
  } catch (const DbError& e) {
    if (e.code() == 787) {
      throw InputError(Location{"", 0, "id"},
                       std::string("unknown ") +
                           (kind == SampleKind::kResponse ? "response " : "dialogue ") +
                           std::to_string(id));
    }
    throw;
  }
  tx.commit();
}

namespace {

// A prompt/response value as a message list with the given role for a plain string.
void append_as_messages(Json* out, const Json& content, const char* role) {
  if (content.is_string()) {
    out->push_back(Json{{"role", role}, {"content", content}});
  } else {
    for (const auto& m : content) out->push_back(m);
  }
}

}  // namespace

std::vector<SelectedSample> Store::selected_samples(int round) {
  auto& s = stmt(kSelSelected,
                 "SELECT s.response_id, s.dialogue_id, s.reason, p.body, r.body, r.system_prompt,"
                 " d.body FROM selections s"
                 " LEFT JOIN responses r ON r.id = s.response_id"
                 " LEFT JOIN prompts p ON p.id = r.prompt_id"
                 " LEFT JOIN dialogues d ON d.id = s.dialogue_id"
                 " WHERE s.round = ? ORDER BY s.id")
                .bind(1, round);
  std::vector<SelectedSample> out;
  while (s.step()) {
    SelectedSample x;
    x.reason = s.column_text(2);
    if (!s.column_is_null(0)) {
      x.kind = SampleKind::kResponse;
      x.id = s.column_int(0);
      x.messages = Json::array();
      if (!s.column_is_null(5)) {
        x.messages.push_back(Json{{"role", "system"}, {"content", s.column_text(5)}});
      }
      append_as_messages(&x.messages, parse_stored(s.column_view(3)), "user");
      append_as_messages(&x.messages, parse_stored(s.column_view(4)), "assistant");
    } else {
      x.kind = SampleKind::kDialogue;
      x.id = s.column_int(1);
      x.messages = parse_stored(s.column_view(6));
    }
    out.push_back(std::move(x));
  }
  return out;
}

// ---- reference log-probs ----------------------------------------------------------------------

void Store::put_ref_logprobs(int64_t pair_id, const std::string& reference,
                             const std::string& settings_hash, const RefLogprobs& v) {
  if (reference.empty() || settings_hash.empty()) {
    throw InputError(Location{"", 0, reference.empty() ? "reference" : "settings_hash"}, "empty");
  }
  Transaction tx(*db_);
  try {
    stmt(kPutRef,
         "INSERT OR REPLACE INTO ref_logprobs(pair_id, reference, settings_hash, chosen, rejected,"
         " chosen_tokens, rejected_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(1, pair_id)
        .bind(2, reference)
        .bind(3, settings_hash)
        .bind(4, v.chosen)
        .bind(5, v.rejected)
        .bind(6, v.chosen_tokens)
        .bind(7, v.rejected_tokens)
        .run();
  } catch (const DbError& e) {
    if (e.code() == 787) {
      throw InputError(Location{"", 0, "pair_id"}, "unknown pair " + std::to_string(pair_id));
    }
    throw;
  }
  tx.commit();
}

std::optional<RefLogprobs> Store::get_ref_logprobs(int64_t pair_id, const std::string& reference,
                                                   const std::string& settings_hash) {
  auto& s = stmt(kGetRef,
                 "SELECT chosen, rejected, chosen_tokens, rejected_tokens FROM ref_logprobs"
                 " WHERE reference = ? AND settings_hash = ? AND pair_id = ?")
                .bind(1, reference)
                .bind(2, settings_hash)
                .bind(3, pair_id);
  std::optional<RefLogprobs> out;
  if (s.step()) {
    out = RefLogprobs{s.column_double(0), s.column_double(1), s.column_int(2), s.column_int(3)};
  }
  s.reset();
  return out;
}

std::map<int64_t, RefLogprobs> Store::ref_logprobs_for(const std::string& reference,
                                                       const std::string& settings_hash) {
  auto& s = stmt(kAllRef,
                 "SELECT pair_id, chosen, rejected, chosen_tokens, rejected_tokens FROM"
                 " ref_logprobs WHERE reference = ? AND settings_hash = ?")
                .bind(1, reference)
                .bind(2, settings_hash);
  std::map<int64_t, RefLogprobs> out;
  while (s.step()) {
    out[s.column_int(0)] =
        RefLogprobs{s.column_double(1), s.column_double(2), s.column_int(3), s.column_int(4)};
  }
  return out;
}

// ---- checkpoints, evals, metrics --------------------------------------------------------------

int64_t Store::add_checkpoint(const std::string& path, const std::string& stage, int round,
                              const std::vector<int64_t>& parents,
                              const std::vector<double>& weights) {
  if (path.empty()) throw InputError(Location{"", 0, "path"}, "empty checkpoint path");
  if (stage.empty()) throw InputError(Location{"", 0, "stage"}, "empty stage");
  if (!weights.empty() && weights.size() != parents.size()) {
    throw InputError(Location{"", 0, "weights"}, "expected one weight per parent");
  }
  Transaction tx(*db_);
  if (auto known = checkpoint_by_path(path)) return known->id;
  // Check the parents first, so a bad one leaves nothing behind even inside a caller's
  // transaction (which this one joins and cannot roll back alone).
  for (size_t i = 0; i < parents.size(); ++i) {
    if (!checkpoint(parents[i])) {
      throw InputError(Location{"", 0, "parents[" + std::to_string(i) + "]"},
                       "unknown checkpoint " + std::to_string(parents[i]));
    }
  }
  stmt(kInsCheckpoint, "INSERT INTO checkpoints(path, stage, round) VALUES (?, ?, ?)")
      .bind(1, path)
      .bind(2, stage)
      .bind(3, round)
      .run();
  int64_t id = db_->last_insert_rowid();
  for (size_t i = 0; i < parents.size(); ++i) {
    try {
      stmt(kInsParent,
           "INSERT INTO checkpoint_parents(child_id, position, parent_id, weight)"
           " VALUES (?, ?, ?, ?)")
          .bind(1, id)
          .bind(2, static_cast<int64_t>(i))
          .bind(3, parents[i])
          .bind(4, weights.empty() ? 1.0 : weights[i])
          .run();
    } catch (const DbError& e) {
      if (e.code() == 787) {
        throw InputError(Location{"", 0, "parents[" + std::to_string(i) + "]"},
                         "unknown checkpoint " + std::to_string(parents[i]));
      }
      throw;
    }
  }
  tx.commit();
  return id;
}

std::optional<Checkpoint> Store::checkpoint(int64_t id) {
  auto& s = stmt(kSelCheckpoint, "SELECT id, path, stage, round FROM checkpoints WHERE id = ?")
                .bind(1, id);
  if (!s.step()) return std::nullopt;
  Checkpoint c;
  c.id = s.column_int(0);
  c.path = s.column_text(1);
  c.stage = s.column_text(2);
  c.round = static_cast<int>(s.column_int(3));
  s.reset();
  auto& p = stmt(kSelParents,
                 "SELECT parent_id, weight FROM checkpoint_parents WHERE child_id = ?"
                 " ORDER BY position")
                .bind(1, c.id);
  while (p.step()) {
    c.parents.push_back(p.column_int(0));
    c.weights.push_back(p.column_double(1));
  }
  return c;
}

std::optional<Checkpoint> Store::checkpoint_by_path(const std::string& path) {
  auto& s = stmt(kSelCheckpointPath, "SELECT id FROM checkpoints WHERE path = ?").bind(1, path);
  if (!s.step()) return std::nullopt;
  int64_t id = s.column_int(0);
  s.reset();
  return checkpoint(id);
}

std::vector<Checkpoint> Store::checkpoints(const std::optional<std::string>& stage) {
  Statement s(*db_, stage ? "SELECT id FROM checkpoints WHERE stage = ? ORDER BY id"
                          : "SELECT id FROM checkpoints ORDER BY id");
  if (stage) s.bind(1, *stage);
  std::vector<int64_t> ids;
  while (s.step()) ids.push_back(s.column_int(0));
  std::vector<Checkpoint> out;
  for (int64_t id : ids) out.push_back(*checkpoint(id));
  return out;
}

int64_t Store::add_eval(std::optional<int64_t> checkpoint_id, int round, const std::string& name,
                        double value, const Json& details) {
  if (name.empty()) throw InputError(Location{"", 0, "name"}, "empty eval name");
  Transaction tx(*db_);
  auto d = json_or_null(details);
  try {
    stmt(kInsEval,
         "INSERT INTO evals(checkpoint_id, round, name, value, details) VALUES (?, ?, ?, ?, ?)")
        .bind(1, checkpoint_id)
        .bind(2, round)
        .bind(3, name)
        .bind(4, value)
        .bind(5, d)
        .run();
  } catch (const DbError& e) {
    if (e.code() == 787) throw InputError(Location{"", 0, "checkpoint_id"}, "unknown checkpoint");
    throw;
  }
  int64_t id = db_->last_insert_rowid();
  tx.commit();
  return id;
}

std::vector<Eval> Store::evals(const std::optional<std::string>& name) {
  Statement s(*db_,
              std::string("SELECT id, checkpoint_id, round, name, value, details FROM evals") +
                  (name ? " WHERE name = ?" : "") + " ORDER BY id");
  if (name) s.bind(1, *name);
  std::vector<Eval> out;
  while (s.step()) {
    Eval e;
    e.id = s.column_int(0);
    e.checkpoint_id = s.column_opt_int(1);
    e.round = static_cast<int>(s.column_int(2));
    e.name = s.column_text(3);
    e.value = s.column_double(4);
    if (!s.column_is_null(5)) e.details = parse_stored(s.column_view(5));
    out.push_back(std::move(e));
  }
  return out;
}

void Store::add_metric(int64_t run_id, int64_t step, const std::string& name, double value) {
  if (name.empty()) throw InputError(Location{"", 0, "name"}, "empty metric name");
  Transaction tx(*db_);
  try {
    stmt(kInsMetric,
         "INSERT INTO metrics(run_id, name, step, value) VALUES (?, ?, ?, ?)"
         " ON CONFLICT(run_id, name, step) DO UPDATE SET value = excluded.value")
        .bind(1, run_id)
        .bind(2, name)
        .bind(3, step)
        .bind(4, value)
        .run();
  } catch (const DbError& e) {
    if (e.code() == 787) {
      throw InputError(Location{"", 0, "run_id"}, "unknown run " + std::to_string(run_id));
    }
    throw;
  }
  tx.commit();
}

std::vector<Metric> Store::metrics(int64_t run_id, const std::optional<std::string>& name) {
  Statement s(*db_, std::string("SELECT step, name, value FROM metrics WHERE run_id = ?") +
                        (name ? " AND name = ?" : "") + " ORDER BY step, name");
  s.bind(1, run_id);
  if (name) s.bind(2, *name);
  std::vector<Metric> out;
  while (s.step()) out.push_back(Metric{s.column_int(0), s.column_text(1), s.column_double(2)});
  return out;
}

// ---- stats ------------------------------------------------------------------------------------

Stats Store::stats() {
  Stats st;
  for (const char* t : {"runs", "checkpoints", "prompts", "responses", "scores", "preference_pairs",
                        "synthetic_problems", "synthetic_attempts", "dialogues", "selections",
                        "ref_logprobs", "evals", "metrics", "annotators", "annotation_tasks",
                        "judgements"}) {
    st.tables[t] = db_->query_int(std::string("SELECT count(*) FROM ") + t);
  }
  Statement r(*db_, "SELECT round, count(*) FROM preference_pairs GROUP BY round");
  while (r.step()) st.pairs_by_round[static_cast<int>(r.column_int(0))] = r.column_int(1);
  Statement s(*db_, "SELECT source, count(*) FROM preference_pairs GROUP BY source");
  while (s.step()) st.pairs_by_source[s.column_text(0)] = s.column_int(1);
  Statement g(*db_,
              "SELECT coalesce(strength, 'unlabelled'), count(*) FROM preference_pairs"
              " GROUP BY 1");
  while (g.step()) st.pairs_by_strength[g.column_text(0)] = g.column_int(1);
  return st;
}

std::string Store::integrity_check() { return db_->query_text("PRAGMA integrity_check"); }

}  // namespace posttrain::datastore
