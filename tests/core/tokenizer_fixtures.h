// The tokenizer fixtures written by tests/fixtures/make_tokenizer_fixtures.py, shared by the
// parity and chat-template tests.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace posttrain::core::testing_fixtures {

inline const std::string kDir = std::string(POSTTRAIN_FIXTURES) + "/tokenizer/";

// tests/fixtures/tokenizer/expected.json, parsed once.
inline const nlohmann::json& expected() {
  static const nlohmann::json doc = [] {
    std::ifstream in(kDir + "expected.json");
    std::stringstream s;
    s << in.rdbuf();
    return nlohmann::json::parse(s.str());
  }();
  return doc;
}

}  // namespace posttrain::core::testing_fixtures
