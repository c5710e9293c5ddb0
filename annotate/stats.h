// `posttrain annotate stats`: who judged how much, the strength distribution, skips, and
// agreement on tasks judged by two or more annotators (the first two judgements of each):
// percent agreement on the choice and Cohen's kappa, with the first judgement of a task as
// rater 1 and the second as rater 2:
//   p_o = agreeing tasks / tasks,  p_e = P1(A) P2(A) + P1(B) P2(B),
//   kappa = (p_o - p_e) / (1 - p_e)
// (kappa is undefined, and left out, when p_e = 1: both raters always chose the same side).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "datastore/annotation_store.h"

namespace posttrain::annotate {

struct AnnotatorStats {
  int64_t judgements = 0, skips = 0, edits = 0;
};

struct AnnotationStats {
  std::map<std::string, AnnotatorStats> by_annotator;  // every annotator, even with no rows
  std::map<std::string, int64_t> strengths;            // the four names, zero included
  int64_t judgements = 0, skips = 0, edits = 0;
  int64_t tasks = 0, open_tasks = 0, pairs = 0;
  int64_t doubly_judged = 0, agreeing = 0;
  std::optional<double> percent_agreement;  // set when doubly_judged > 0
  std::optional<double> kappa;
};

AnnotationStats annotation_stats(datastore::Store& store);
// Computed from judgements alone (by task, then id), for the store-free tests.
AnnotationStats stats_of(const std::vector<datastore::Judgement>& judgements);

nlohmann::json to_json(const AnnotationStats& stats);
std::string to_table(const AnnotationStats& stats);

}  // namespace posttrain::annotate
