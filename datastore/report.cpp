#include "datastore/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/error.h"
#include "datastore/sqlite.h"
#include "datastore/store.h"

namespace posttrain::datastore {
namespace {

const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

// A short number for axis labels: 3 significant digits.
std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g", v);
  return buf;
}

const char kStyle[] =
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1120px}"
    "h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left}th{background:#f3f3f3}.charts{display:flex;flex-wrap:wrap;gap:12px}"
    "svg{background:#fff;border:1px solid #e3e3e3}.note{color:#666;font-size:13px}";

}  // namespace

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string svg_line_chart(const std::string& title, const std::string& x_label,
                           const std::vector<ChartSeries>& series, int width, int height) {
  // Plot area inside margins for the title, tick labels and legend.
  const double left = 56, right = 16, top = 28, bottom = 44;
  const double pw = width - left - right, ph = height - top - bottom;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  }
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"" << width
    << "\" height=\"" << height << "\" viewBox=\"0 0 " << width << " " << height
    << "\" role=\"img\" aria-label=\"" << html_escape(title) << "\">";
  o << "<text x=\"" << left << "\" y=\"18\" font-size=\"14\" font-weight=\"bold\">"
    << html_escape(title) << "</text>";
  if (!(x0 <= x1)) {
    o << "<text x=\"" << left << "\" y=\"" << top + ph / 2 << "\" font-size=\"12\" fill=\"#888\">"
      << "no data</text></svg>";
    return o.str();
  }
  if (x1 == x0) x0 -= 0.5, x1 += 0.5;
  if (y1 == y0) y0 -= 0.5, y1 += 0.5;
  auto sx = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto sy = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * ph; };
  // Grid and y ticks at quarters; x ticks at both ends.
  for (int i = 0; i <= 4; ++i) {
    const double y = y0 + (y1 - y0) * i / 4.0;
    o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << sy(y) << "\" y2=\""
      << sy(y) << "\" stroke=\"#eee\"/>";
    o << "<text x=\"" << left - 6 << "\" y=\"" << sy(y) + 4
      << "\" font-size=\"11\" text-anchor=\"end\">" << fmt(y) << "</text>";
  }
  o << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"#999\"/>";
  o << "<text x=\"" << left << "\" y=\"" << top + ph + 16 << "\" font-size=\"11\">" << fmt(x0)
    << "</text><text x=\"" << left + pw << "\" y=\"" << top + ph + 16
    << "\" font-size=\"11\" text-anchor=\"end\">" << fmt(x1) << "</text>";
  o << "<text x=\"" << left + pw / 2 << "\" y=\"" << top + ph + 16
    << "\" font-size=\"11\" text-anchor=\"middle\" fill=\"#555\">" << html_escape(x_label)
    << "</text>";
  size_t k = 0;
  double legend_x = left;
  for (const auto& s : series) {
    if (s.points.empty()) continue;
    const char* color = kPalette[k++ % (sizeof(kPalette) / sizeof(kPalette[0]))];
    o << "<polyline class=\"series\" data-name=\"" << html_escape(s.name)
      << "\" fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.8\" points=\"";
    for (const auto& [x, y] : s.points) {
      if (std::isfinite(x) && std::isfinite(y)) o << sx(x) << "," << sy(y) << " ";
    }
    o << "\"/>";
    if (s.points.size() <= 20) {  // few points (rounds): mark each
      for (const auto& [x, y] : s.points) {
        if (std::isfinite(x) && std::isfinite(y)) {
          o << "<circle cx=\"" << sx(x) << "\" cy=\"" << sy(y) << "\" r=\"3\" fill=\"" << color
            << "\"/>";
        }
      }
    }
    o << "<rect x=\"" << legend_x << "\" y=\"" << height - 14 << "\" width=\"10\" height=\"10\" "
      << "fill=\"" << color << "\"/><text x=\"" << legend_x + 14 << "\" y=\"" << height - 5
      << "\" font-size=\"11\">" << html_escape(s.name) << "</text>";
    legend_x += 24 + 7.0 * static_cast<double>(s.name.size());
  }
  o << "</svg>";
  return o.str();
}

std::string render_report(Store& store, const std::string& title) {
  int charts = 0;
  std::ostringstream body;

  // ---- rounds: evals by round --------------------------------------------------------------
  std::map<int, std::map<std::string, double>> by_round;  // round -> eval name -> value
  std::set<std::string> eval_names;
  for (const Eval& e : store.evals()) {
    by_round[e.round][e.name] = e.value;  // the newest value of a name wins
    eval_names.insert(e.name);
  }
  body << "<h2 id=\"rounds\">Rounds</h2>";
  if (by_round.empty()) {
    body << "<p class=\"note\">No evaluations in this store yet.</p>";
  } else {
    body << "<div class=\"charts\">";
    for (const auto& name : eval_names) {
      ChartSeries s{name, {}};
      for (const auto& [round, values] : by_round) {
        auto it = values.find(name);
        if (it != values.end()) s.points.emplace_back(round, it->second);
      }
      body << svg_line_chart(name + " by round", "round", {s});
      ++charts;
    }
    body << "</div><table id=\"rounds-table\"><tr><th>round</th>";
    for (const auto& name : eval_names) body << "<th>" << html_escape(name) << "</th>";
    body << "</tr>";
    for (const auto& [round, values] : by_round) {
      body << "<tr><td>" << round << "</td>";
      for (const auto& name : eval_names) {
        auto it = values.find(name);
        body << "<td>" << (it == values.end() ? "" : fmt(it->second)) << "</td>";
      }
      body << "</tr>";
    }
    body << "</table>";
  }

  // ---- training curves: loss and eval_loss of every run with metrics -----------------------
  body << "<h2 id=\"training\">Training curves</h2>";
  Statement runs(store.db(),
                 "SELECT r.id, r.name FROM runs r WHERE EXISTS "
                 "(SELECT 1 FROM metrics m WHERE m.run_id = r.id) ORDER BY r.id");
  std::vector<std::pair<int64_t, std::string>> run_list;
  while (runs.step()) run_list.emplace_back(runs.column_int(0), runs.column_text(1));
  if (run_list.empty()) {
    body << "<p class=\"note\">No training metrics in this store yet.</p>";
  } else {
    body << "<div class=\"charts\">";
    for (const auto& [id, name] : run_list) {
      std::map<std::string, ChartSeries> lines;
      for (const Metric& m : store.metrics(id)) {
        if (m.name != "loss" && m.name.rfind("eval_", 0) != 0) continue;
        auto& s = lines[m.name];
        s.name = m.name;
        s.points.emplace_back(static_cast<double>(m.step), m.value);
      }
      std::vector<ChartSeries> series;
      for (auto& [n, s] : lines) {
        std::sort(s.points.begin(), s.points.end());
        series.push_back(std::move(s));
      }
      body << svg_line_chart(name, "step", series);
      ++charts;
    }
    body << "</div>";
  }

  // ---- checkpoint lineage --------------------------------------------------------------------
  body << "<h2 id=\"lineage\">Checkpoint lineage</h2>";
  const std::vector<Checkpoint> checkpoints = store.checkpoints();
  if (checkpoints.empty()) {
    body << "<p class=\"note\">No checkpoints recorded yet.</p>";
  } else {
    std::map<int64_t, std::string> path_of;
    for (const auto& c : checkpoints) path_of[c.id] = c.path;
    body << "<table id=\"lineage-table\"><tr><th>id</th><th>round</th><th>stage</th>"
            "<th>path</th><th>parents</th></tr>";
    for (const auto& c : checkpoints) {
      body << "<tr><td>" << c.id << "</td><td>" << c.round << "</td><td>"
           << html_escape(c.stage) << "</td><td>" << html_escape(c.path) << "</td><td>";
      for (size_t i = 0; i < c.parents.size(); ++i) {
        body << (i ? "<br>" : "") << "#" << c.parents[i];
        if (i < c.weights.size() && c.parents.size() > 1) body << " × " << fmt(c.weights[i]);
      }
      body << "</td></tr>";
    }
    body << "</table>";
  }

  std::ostringstream page;
  page << "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
       << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
       << "style-src 'unsafe-inline'; img-src data:\"><title>" << html_escape(title)
       << "</title><style>" << kStyle << "</style></head><body><h1>" << html_escape(title)
       << "</h1><p class=\"note\" id=\"summary\">" << by_round.size() << " rounds with evals, "
       << run_list.size() << " training runs, " << checkpoints.size() << " checkpoints, "
       << charts << " charts.</p>" << body.str() << "</body></html>\n";
  return page.str();
}

int write_report(const std::string& store_path, const std::string& out_path) {
  if (!std::filesystem::exists(store_path)) {
    throw IoError("no store at " + store_path + " (nothing to report)");
  }
  Store store = Store::open(store_path);
  const std::string html = render_report(
      store, "posttrain report: " + std::filesystem::path(store_path).filename().string());
  const std::string tmp = out_path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << html;
    if (!out) throw IoError("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, out_path);
  int charts = 0;
  for (size_t pos = 0; (pos = html.find("<svg", pos)) != std::string::npos; ++pos) ++charts;
  return charts;
}

}  // namespace posttrain::datastore
