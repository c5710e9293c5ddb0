// `posttrain report --store DB --output report.html`: the store as one self-contained HTML page
// (inline CSS and SVG; no scripts, nothing loaded from elsewhere), so a user sees a recipe's
// rounds at a glance:
//   - per-round metrics: one chart per eval name (held-out accuracy, RM accuracy, ...) over
//     rounds, and a table of the rounds with every eval value;
//   - training curves: one chart per training run of the metrics table (a recipe stage is run
//     "RECIPE/round-R/STAGE"): loss and eval_loss over steps;
//   - checkpoint lineage: every checkpoint with its stage, round and parents (with weights).
// Text from the store is HTML-escaped.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace posttrain::datastore {

class Store;

// One line of a chart: (x, y) points in x order.
struct ChartSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;
};

// An inline <svg> line chart with axes, min/max tick labels and a legend. Empty series are
// left out; with no points at all it says so.
std::string svg_line_chart(const std::string& title, const std::string& x_label,
                           const std::vector<ChartSeries>& series, int width = 520,
                           int height = 260);

// &, <, >, " and ' as entities.
std::string html_escape(const std::string& text);

// The whole page for `store`.
std::string render_report(Store& store, const std::string& title);

// Opens the store at `store_path` (IoError when there is none: nothing is created) and writes
// the page to `out_path` via a temporary file and a rename. Returns the number of charts.
int write_report(const std::string& store_path, const std::string& out_path);

}  // namespace posttrain::datastore
