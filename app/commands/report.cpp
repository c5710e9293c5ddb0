// `posttrain report --store DB --output report.html`: the store's rounds, training curves and
// checkpoint lineage as one self-contained HTML page (datastore/report.h).
#include <iostream>

#include "app/command.h"
#include "app/options.h"
#include "common/error.h"
#include "datastore/report.h"

namespace posttrain::app {
namespace {

const char kUsage[] =
    "usage: posttrain report --store DB --output report.html\n\n"
    "Writes one self-contained HTML page (inline SVG charts, no scripts, nothing loaded from\n"
    "elsewhere): per-round evals as charts and a table, the loss curves of every training run\n"
    "in the store's metrics table, and the checkpoint lineage.";

int run_report(const std::vector<std::string>& args) {
  po::options_description desc("report options");
  desc.add_options()("store", po::value<std::string>(), "the SQLite store to report on");
  add_output_option(desc, "HTML file to write");
  po::variables_map vm;
  if (!parse_options(kUsage, desc, args, &vm)) return 0;
  if (!vm.count("store")) throw UsageError("--store is required (see --help)");
  const std::string out = require_output(vm, "report");
  const int charts = datastore::write_report(vm["store"].as<std::string>(), out);
  std::cout << "wrote " << out << " (" << charts << " charts)\n";
  return 0;
}

}  // namespace

POSTTRAIN_COMMAND("report", "an HTML report of a store: rounds, training curves, lineage",
                  run_report);

}  // namespace posttrain::app
