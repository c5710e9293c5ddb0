#include "annotate/stats.h"

#include <cstdio>
#include <sstream>

namespace posttrain::annotate {

using datastore::Choice;
using datastore::Strength;

AnnotationStats stats_of(const std::vector<datastore::Judgement>& judgements) {
  AnnotationStats st;
  for (Strength s : {Strength::kSignificantlyBetter, Strength::kBetter, Strength::kSlightlyBetter,
                     Strength::kMarginallyBetter}) {
    st.strengths[datastore::strength_name(s)] = 0;
  }
  // First and second choices of each task (judgements come grouped by task, in id order).
  int64_t first_a = 0, second_a = 0;
  for (size_t i = 0; i < judgements.size();) {
    size_t j = i;
    std::vector<Choice> choices;
    for (; j < judgements.size() && judgements[j].task_id == judgements[i].task_id; ++j) {
      const auto& v = judgements[j];
      AnnotatorStats& a = st.by_annotator[v.annotator];
      if (!v.choice) {
        ++a.skips;
        ++st.skips;
        continue;
      }
      ++a.judgements;
      ++st.judgements;
      ++st.strengths[datastore::strength_name(*v.strength)];
      if (v.edited_id) {
        ++a.edits;
        ++st.edits;
      }
      choices.push_back(*v.choice);
    }
    i = j;
    if (choices.size() < 2) continue;
    ++st.doubly_judged;
    if (choices[0] == choices[1]) ++st.agreeing;
    first_a += choices[0] == Choice::kA;
    second_a += choices[1] == Choice::kA;
  }
  if (st.doubly_judged > 0) {
    const double n = static_cast<double>(st.doubly_judged);
    const double po = st.agreeing / n;
    const double p1 = first_a / n, p2 = second_a / n;
    const double pe = p1 * p2 + (1 - p1) * (1 - p2);
    st.percent_agreement = 100.0 * po;
    if (pe < 1.0) st.kappa = (po - pe) / (1.0 - pe);
  }
  return st;
}

AnnotationStats annotation_stats(datastore::Store& store) {
  datastore::AnnotationStore ann(store);
  AnnotationStats st = stats_of(ann.all_judgements());
  for (const auto& a : ann.annotators()) st.by_annotator[a.name];  // zero rows for the idle
  st.tasks = ann.count_tasks(false);
  st.open_tasks = ann.count_tasks(true);
  datastore::PairFilter f;
  f.source = "annotation";
  f.with_content = false;
  store.for_each_pair(f, [&](const datastore::Pair&) { ++st.pairs; });
  return st;
}

nlohmann::json to_json(const AnnotationStats& st) {
  nlohmann::json j;
  j["judgements"] = st.judgements;
  j["skips"] = st.skips;
  j["edits"] = st.edits;
  j["tasks"] = st.tasks;
  j["open_tasks"] = st.open_tasks;
  j["pairs"] = st.pairs;
  j["strengths"] = st.strengths;
  j["by_annotator"] = nlohmann::json::object();
  for (const auto& [name, a] : st.by_annotator) {
    j["by_annotator"][name] = {
        {"judgements", a.judgements}, {"skips", a.skips}, {"edits", a.edits}};
  }
  j["agreement"] = {
      {"doubly_judged", st.doubly_judged},
      {"agreeing", st.agreeing},
      {"percent", st.percent_agreement ? nlohmann::json(*st.percent_agreement) : nlohmann::json()},
      {"kappa", st.kappa ? nlohmann::json(*st.kappa) : nlohmann::json()}};
  return j;
}

std::string to_table(const AnnotationStats& st) {
  std::ostringstream o;
  char buf[160];
  std::snprintf(buf, sizeof buf, "%-24s %10s %8s %8s\n", "annotator", "judgements", "skips",
                "edits");
  o << buf;
  for (const auto& [name, a] : st.by_annotator) {
    std::snprintf(buf, sizeof buf, "%-24s %10lld %8lld %8lld\n", name.c_str(),
                  static_cast<long long>(a.judgements), static_cast<long long>(a.skips),
                  static_cast<long long>(a.edits));
    o << buf;
  }
  std::snprintf(buf, sizeof buf, "%-24s %10lld %8lld %8lld\n\n", "total",
                static_cast<long long>(st.judgements), static_cast<long long>(st.skips),
                static_cast<long long>(st.edits));
  o << buf;
  o << "strength:";
  for (const char* s : {"significantly_better", "better", "slightly_better", "marginally_better"}) {
    o << " " << s << " " << st.strengths.at(s);
  }
  o << "\ntasks: " << st.tasks << " (" << st.open_tasks << " open), annotation pairs: " << st.pairs
    << "\n";
  o << "agreement: " << st.doubly_judged << " doubly-judged tasks";
  if (st.percent_agreement) {
    std::snprintf(buf, sizeof buf, ", %.1f%% agree", *st.percent_agreement);
    o << buf;
    if (st.kappa) {
      std::snprintf(buf, sizeof buf, ", Cohen's kappa %.3f", *st.kappa);
      o << buf;
    } else {
      o << ", Cohen's kappa undefined (every judgement chose the same side)";
    }
  }
  o << "\n";
  return o.str();
}

}  // namespace posttrain::annotate
