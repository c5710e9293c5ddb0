// `posttrain store init|stats|pairs|import|export|select`: the command-line face of datastore/.
// Parsing only; every read and write goes through posttrain::datastore.
#include "datastore/store.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "app/command.h"
#include "app/options.h"
#include "common/error.h"
#include "common/progress.h"
#include "datastore/export.h"
#include "datastore/import.h"
#include "datastore/schema.h"
#include "datastore/select.h"

namespace posttrain::app {
namespace {

namespace ds = posttrain::datastore;

const char* kUsage =
    "usage: posttrain store init   --store DB\n"
    "       posttrain store stats  --store DB [--json]\n"
    "       posttrain store pairs  --store DB [--round R]... [--min-strength S] [--source NAME]\n"
    "                              [--annotator NAME] [--limit N] | --id N\n"
    "       posttrain store import --store DB --format trl|hh-rlhf|ranking|annotations|messages\n"
    "                              [--round R] [--source NAME] [--skip-bad] FILE\n"
    "       posttrain store export --store DB --format trl|openrlhf|messages --output FILE\n"
    "                              [--round R]... [--min-strength S] [--source NAME]\n"
    "                              [--annotator NAME] [--expand-rankings] [--as text|messages]\n"
    "                              [--margin] [--prompt-key K] [--chosen-key K] [--rejected-key K]\n"
    "       posttrain store select --store DB --round R [--from-round R]... [--source NAME]\n"
    "                              [--kind math|code|tool|none] [--verdict V] [--reason TEXT]";

// `posttrain store --help`: one line per subcommand, then the usage.
const char* kSubcommands =
    "posttrain store: the SQLite datastore (datastore/README.md)\n\n"
    "  init    create a store (or migrate one) and print its schema version\n"
    "  stats   rows per table, pairs per round, source and strength\n"
    "  pairs   list preference pairs (filters), or show one in full with --id\n"
    "  import  read JSONL: trl, hh-rlhf, ranking, annotations (pairs), messages (dialogues)\n"
    "  export  write JSONL for TRL, OpenRLHF (pairs) or messages (dialogues)\n"
    "  select  make stored dialogues a round's SFT data (filters: source, kind, verdict)\n\n"
    "posttrain store CMD --help describes CMD's options.\n\n";

void add_store_option(po::options_description& desc) {
  desc.add_options()("store", po::value<std::string>()->required(), "SQLite store file");
}

// Opens an existing store (commands that only read must not create an empty file).
ds::Store open_existing(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    throw UsageError("no store at " + path + " (create one with: posttrain store init --store " +
                     path + ")");
  }
  return ds::Store::open(path);
}

void add_filter_options(po::options_description& desc) {
  desc.add_options()("round", po::value<std::vector<int>>()->composing(),
                     "only this round (repeatable)")(
      "min-strength", po::value<std::string>(),
      "keep pairs at least this strong, plus unlabelled ones")("source", po::value<std::string>(),
                                                               "only pairs from this source")(
      "annotator", po::value<std::string>(), "only pairs by this annotator");
}

ds::PairFilter read_filter(const po::variables_map& vm) {
  ds::PairFilter f;
  if (vm.count("round")) f.rounds = vm["round"].as<std::vector<int>>();
  if (vm.count("min-strength")) {
    std::string s = vm["min-strength"].as<std::string>();
    f.min_strength = ds::parse_strength(s);
    if (!f.min_strength) {
      throw UsageError(
          "--min-strength must be significantly_better, better, slightly_better or "
          "marginally_better, not '" +
          s + "'");
    }
  }
  if (vm.count("source")) f.source = vm["source"].as<std::string>();
  if (vm.count("annotator")) f.annotator = vm["annotator"].as<std::string>();
  return f;
}

int cmd_init(const std::vector<std::string>& args) {
  po::options_description desc("store init");
  add_store_option(desc);
  po::variables_map vm;
  if (!parse_options(kUsage, desc, args, &vm)) return 0;
  auto store = ds::Store::open(vm["store"].as<std::string>());
  std::cout << "store " << vm["store"].as<std::string>() << ": schema version "
            << store.schema_version() << "\n";
  return 0;
}

int cmd_stats(const std::vector<std::string>& args) {
  po::options_description desc("store stats");
  add_store_option(desc);
  desc.add_options()("json", po::bool_switch(), "print one JSON object instead of tables");
  po::variables_map vm;
  if (!parse_options(kUsage, desc, args, &vm)) return 0;
  auto store = open_existing(vm["store"].as<std::string>());
  ds::Stats st = store.stats();
  if (vm["json"].as<bool>()) {
    nlohmann::json j;
    j["tables"] = st.tables;
    for (const auto& [r, n] : st.pairs_by_round) j["pairs_by_round"][std::to_string(r)] = n;
    j["pairs_by_source"] = st.pairs_by_source;
    j["pairs_by_strength"] = st.pairs_by_strength;
    std::cout << j.dump() << "\n";
    return 0;
  }
  auto section = [](const std::string& title, const auto& rows) {
    std::cout << title << "\n";
    for (const auto& [k, n] : rows) {
      std::ostringstream key;
      key << k;
      std::cout << "  " << std::left << std::setw(24) << key.str() << std::right << std::setw(10)
                << n << "\n";
    }
  };
  section("rows per table", st.tables);
  section("pairs per round", st.pairs_by_round);
  section("pairs per source", st.pairs_by_source);
  section("pairs per strength", st.pairs_by_strength);
  return 0;
}

std::string preview(const nlohmann::json& content, size_t width) {
  std::string t = ds::to_text(content).get<std::string>();
  for (char& c : t) {
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  }
  size_t start = t.find_first_not_of(' ');
  t = start == std::string::npos ? "" : t.substr(start);
  if (t.size() > width) {
    size_t cut = width;
    while (cut > 0 && (static_cast<unsigned char>(t[cut]) & 0xC0) == 0x80) --cut;  // UTF-8
    t = t.substr(0, cut) + "...";
  }
  return t;
}

int cmd_pairs(const std::vector<std::string>& args) {
  po::options_description desc("store pairs");
  add_store_option(desc);
  add_filter_options(desc);
  desc.add_options()("id", po::value<int64_t>(), "show this pair in full (JSON)")(
      "limit", po::value<int64_t>()->default_value(-1), "list at most N pairs");
  po::variables_map vm;
  if (!parse_options(kUsage, desc, args, &vm)) return 0;
  auto store = open_existing(vm["store"].as<std::string>());
  if (vm.count("id")) {
    int64_t id = vm["id"].as<int64_t>();
    auto p = store.pair(id);
    if (!p) throw UsageError("no pair with id " + std::to_string(id));
    nlohmann::json j = {{"id", p->id},         {"round", p->round},   {"source", p->source},
                        {"prompt", p->prompt}, {"chosen", p->chosen}, {"rejected", p->rejected}};
    j["strength"] = p->strength ? nlohmann::json(ds::strength_name(*p->strength)) : nullptr;
    j["annotator"] = p->annotator.empty() ? nlohmann::json() : nlohmann::json(p->annotator);
    j["edited"] = p->edited;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  ds::PairFilter f = read_filter(vm);
  f.limit = vm["limit"].as<int64_t>();
  int64_t n = 0;
  std::cout << std::left << std::setw(8) << "id" << std::setw(7) << "round" << std::setw(22)
            << "strength" << std::setw(16) << "source"
            << "prompt\n";
  store.for_each_pair(f, [&](const ds::Pair& p) {
    std::cout << std::left << std::setw(8) << p.id << std::setw(7) << p.round << std::setw(22)
              << (p.strength ? ds::strength_name(*p.strength) : "-") << std::setw(16)
              << p.source.substr(0, 15) << preview(p.prompt, 60) << "\n";
    ++n;
  });
  std::cout << n << " pair(s)\n";
  return 0;
}

int cmd_import(const std::vector<std::string>& args) {
  po::options_description desc("store import");
  add_store_option(desc);
  desc.add_options()("format", po::value<std::string>()->required(),
                     "trl, hh-rlhf, ranking, annotations or messages")(
      "round", po::value<int>(), "round of rows that do not give their own (default 0)")(
      "source", po::value<std::string>(),
      "source of rows that do not give their own "
      "(default: the file name without extension)")(
      "skip-bad", po::bool_switch(),
      "skip malformed lines (each reported) instead of "
      "rolling the whole import back")("file", po::value<std::string>()->required(),
                                       "JSONL file to import ('-' = stdin)");
  po::variables_map vm;
  if (!parse_options(kUsage, desc, args, &vm, {{"file", 1}})) return 0;
  ds::ImportOptions opt;
  opt.format = ds::parse_import_format(vm["format"].as<std::string>());
  if (vm.count("round")) {
    opt.round = vm["round"].as<int>();
    if (*opt.round < 0) throw UsageError("--round must be >= 0");
  }
  if (vm.count("source")) opt.source = vm["source"].as<std::string>();
  opt.skip_bad = vm["skip-bad"].as<bool>();
  opt.on_skipped = [](const InputError& e) { std::cerr << "skipped: " << e.what() << "\n"; };
  const std::string file = vm["file"].as<std::string>();
  // An unreadable input must not leave a new, empty store behind.
  if (file != "-" && !std::ifstream(file)) throw IoError("cannot open " + file + " for reading");
  auto start = std::chrono::steady_clock::now();
  auto store = ds::Store::open(vm["store"].as<std::string>());
  Progress bar("import " + file, -1);
  opt.on_progress = [&](int64_t lines) { bar.update(lines, "lines"); };
  ds::ImportSummary s = ds::import_jsonl(store, file, opt);
  bar.finish();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const char* what = opt.format == ds::ImportFormat::kMessages ? "dialogues" : "pairs";
  std::cout << "imported " << s.imported << " " << what << ", " << s.duplicates << " duplicates, "
            << s.skipped << " skipped (" << s.lines << " lines of " << file << ", " << std::fixed
            << std::setprecision(2) << secs << " s)\n";
  return 0;
}

int cmd_export(const std::vector<std::string>& args) {
  po::options_description desc("store export");
  add_store_option(desc);
  add_output_option(desc, "JSONL file to write ('-' = stdout)");
  add_filter_options(desc);
  desc.add_options()("format", po::value<std::string>()->required(), "trl, openrlhf or messages")(
      "expand-rankings", po::bool_switch(),
      "a pair with an edit becomes edited>chosen, edited>rejected, chosen>rejected")(
      "as", po::value<std::string>(), "force every value to text or messages")(
      "prompt-key", po::value<std::string>(),
      "openrlhf: keep the prompt apart under this key (default: none, chosen/rejected are "
      "whole conversations)")(
      "chosen-key", po::value<std::string>()->default_value("chosen"), "openrlhf: chosen key")(
      "rejected-key", po::value<std::string>()->default_value("rejected"),
      "openrlhf: rejected key")(
      "margin", po::bool_switch(),
      "add a margin column from the strength label (datastore/strength.h; 0 when unlabelled)");
  po::variables_map vm;
  if (!parse_options(kUsage, desc, args, &vm)) return 0;
  ds::ExportOptions opt;
  opt.format = ds::parse_export_format(vm["format"].as<std::string>());
  const std::string out = require_output(vm, "store export");
  opt.filter = read_filter(vm);
  opt.expand_rankings = vm["expand-rankings"].as<bool>();
  opt.margin = vm["margin"].as<bool>();
  if (vm.count("as")) opt.as = ds::parse_shape(vm["as"].as<std::string>());
  bool key_given = vm.count("prompt-key") || !vm["chosen-key"].defaulted() ||
                   !vm["rejected-key"].defaulted();
  if (key_given && opt.format != ds::ExportFormat::kOpenRlhf) {
    throw UsageError("--prompt-key/--chosen-key/--rejected-key apply to --format openrlhf only");
  }
  if (vm.count("prompt-key")) opt.prompt_key = vm["prompt-key"].as<std::string>();
  opt.chosen_key = vm["chosen-key"].as<std::string>();
  opt.rejected_key = vm["rejected-key"].as<std::string>();
  if (opt.chosen_key.empty() || opt.rejected_key.empty() || opt.chosen_key == opt.rejected_key) {
    throw UsageError("--chosen-key and --rejected-key must be two different non-empty names");
  }
  auto start = std::chrono::steady_clock::now();
  auto store = open_existing(vm["store"].as<std::string>());
  ds::ExportSummary s = ds::export_jsonl(store, out, opt);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  (out == "-" ? std::cerr : std::cout)
      << "exported " << s.rows << " rows, " << s.duplicates << " duplicates dropped (" << out
      << ", " << std::fixed << std::setprecision(2) << secs << " s)\n";
  return 0;
}

int cmd_select(const std::vector<std::string>& args) {
  po::options_description desc("store select");
  add_store_option(desc);
  desc.add_options()("round", po::value<int>()->required(),
                     "the round whose SFT data the dialogues become (sft data.store_round)")(
      "from-round", po::value<std::vector<int>>()->composing(),
      "only dialogues stored for this round (repeatable; default any)")(
      "source", po::value<std::string>(), "only dialogues from this source")(
      "kind", po::value<std::string>(),
      "only dialogues solving a synthetic problem of this kind (math, code, tool); none: "
      "dialogues with no problem (imported)")(
      "verdict", po::value<std::string>(),
      "only dialogues whose problem's last attempt has this verdict (pass, fail, ...)")(
      "reason", po::value<std::string>(), "reason stored with each selection");
  po::variables_map vm;
  if (!parse_options(kUsage, desc, args, &vm)) return 0;
  ds::DialogueSelection sel;
  sel.round = vm["round"].as<int>();
  if (sel.round < 0) throw UsageError("--round must be >= 0");
  if (vm.count("from-round")) sel.from_rounds = vm["from-round"].as<std::vector<int>>();
  if (vm.count("source")) sel.source = vm["source"].as<std::string>();
  if (vm.count("kind")) sel.kind = vm["kind"].as<std::string>();
  if (vm.count("verdict")) sel.verdict = vm["verdict"].as<std::string>();
  if (vm.count("reason")) sel.reason = vm["reason"].as<std::string>();
  auto store = open_existing(vm["store"].as<std::string>());
  ds::SelectionSummary s = ds::select_dialogues(store, sel);
  std::cout << "selected " << s.selected << " dialogues for round " << sel.round << " ("
            << s.matched << " matched, " << s.matched - s.selected << " already selected)\n";
  return 0;
}

int run_store(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    (args.empty() ? std::cerr : std::cout) << kSubcommands << kUsage << "\n";
    return args.empty() ? 2 : 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  const std::string& sub = args[0];
  if (sub == "init") return cmd_init(rest);
  if (sub == "stats") return cmd_stats(rest);
  if (sub == "pairs") return cmd_pairs(rest);
  if (sub == "import") return cmd_import(rest);
  if (sub == "export") return cmd_export(rest);
  if (sub == "select") return cmd_select(rest);
  throw UsageError("unknown store command '" + sub +
                   "' (init, stats, pairs, import, export, select)");
}

}  // namespace
}  // namespace posttrain::app

POSTTRAIN_COMMAND("store", "the SQLite store: init, stats, pairs, import, export, select",
                  posttrain::app::run_store);
