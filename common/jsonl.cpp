#include "common/jsonl.h"

#include <iostream>

#include <nlohmann/json.hpp>

#include "common/json_depth.h"

namespace posttrain {

JsonlReader::JsonlReader(const std::string& path) : path_(path) {
  if (path == "-") {
    in_ = &std::cin;
    path_ = "<stdin>";
    return;
  }
  file_.open(path, std::ios::binary);
  if (!file_) throw IoError("cannot open " + path + " for reading");
  in_ = &file_;
}

bool JsonlReader::next(nlohmann::json* row) {
  std::string text;
  while (std::getline(*in_, text)) {
    ++line_;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    if (!is_valid_utf8(text)) throw InputError(where(), "line is not valid UTF-8");
    *row = parse_json(text, where());
    if (!row->is_object()) throw InputError(where(), "expected a JSON object on each line");
    return true;
  }
  if (in_->bad()) throw IoError("read error in " + path_);
  return false;
}

const nlohmann::json& require_field(const nlohmann::json& obj, const std::string& field,
                                    const Location& where) {
  auto it = obj.find(field);
  Location at = where;
  at.field = field;
  if (it == obj.end() || it->is_null()) throw InputError(at, "missing");
  return *it;
}

std::string require_string(const nlohmann::json& obj, const std::string& field,
                           const Location& where) {
  const auto& v = require_field(obj, field, where);
  if (!v.is_string()) {
    Location at = where;
    at.field = field;
    throw InputError(at, std::string("expected a string, got ") + v.type_name());
  }
  return v.get<std::string>();
}

int64_t require_int(const nlohmann::json& obj, const std::string& field, const Location& where) {
  const auto& v = require_field(obj, field, where);
  if (!v.is_number_integer()) {
    Location at = where;
    at.field = field;
    throw InputError(at, std::string("expected an integer, got ") + v.type_name());
  }
  return v.get<int64_t>();
}

std::vector<int64_t> require_int_list(const nlohmann::json& obj, const std::string& field,
                                      const Location& where) {
  const auto& v = require_field(obj, field, where);
  Location at = where;
  at.field = field;
  if (!v.is_array()) throw InputError(at, std::string("expected a list of integers, got ") + v.type_name());
  std::vector<int64_t> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer()) {
      at.field = field + "[" + std::to_string(i) + "]";
      throw InputError(at, std::string("expected an integer, got ") + v[i].type_name());
    }
    out.push_back(v[i].get<int64_t>());
  }
  return out;
}

JsonlWriter::JsonlWriter(const std::string& path) : path_(path) {
  if (path == "-") {
    out_ = &std::cout;
    return;
  }
  file_.open(path, std::ios::binary | std::ios::trunc);
  if (!file_) throw IoError("cannot open " + path + " for writing");
  out_ = &file_;
}

void JsonlWriter::write(const nlohmann::json& row) {
  *out_ << row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  if (!*out_) throw IoError("write failed: " + path_);
}

void JsonlWriter::close() {
  out_->flush();
  if (!*out_) throw IoError("write failed: " + path_);
  if (file_.is_open()) file_.close();
}

bool is_valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) { ++i; continue; }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

}  // namespace posttrain
