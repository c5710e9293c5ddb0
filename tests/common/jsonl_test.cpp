#include "common/jsonl.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

namespace posttrain {
namespace {

std::string write_temp(const std::string& body) {
  char name[] = "/tmp/posttrain_jsonl_XXXXXX";
  int fd = mkstemp(name);
  close(fd);
  std::ofstream(name, std::ios::binary) << body;
  return name;
}

TEST(JsonlReader, SkipsBlankLinesAndCountsLines) {
  auto path = write_temp("{\"a\":1}\n\n  \n{\"a\":2}\r\n");
  JsonlReader reader(path);
  nlohmann::json row;
  ASSERT_TRUE(reader.next(&row));
  EXPECT_EQ(row["a"], 1);
  EXPECT_EQ(reader.line(), 1);
  ASSERT_TRUE(reader.next(&row));
  EXPECT_EQ(row["a"], 2);
  EXPECT_EQ(reader.line(), 4);
  EXPECT_FALSE(reader.next(&row));
  std::remove(path.c_str());
}

TEST(JsonlReader, MalformedLineNamesFileAndLine) {
  auto path = write_temp("{\"a\":1}\n{\"a\":\n");
  JsonlReader reader(path);
  nlohmann::json row;
  ASSERT_TRUE(reader.next(&row));
  try {
    reader.next(&row);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.where().line, 2);
    EXPECT_NE(std::string(e.what()).find(path + ":2"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

TEST(JsonlReader, RejectsNonObjectsAndInvalidUtf8) {
  auto path = write_temp("[1,2]\n{\"a\":\"\xff\"}\n");
  JsonlReader a(path);
  nlohmann::json row;
  EXPECT_THROW(a.next(&row), InputError);
  std::remove(path.c_str());
  path = write_temp("{\"a\":\"\xc0\xaf\"}\n");
  JsonlReader b(path);
  EXPECT_THROW(b.next(&row), InputError);
  std::remove(path.c_str());
}

TEST(JsonFields, WrongTypeNamesTheField) {
  auto row = nlohmann::json::parse(R"({"ids":[1,"x"],"n":"3"})");
  Location at{"in.jsonl", 7, ""};
  try {
    require_int_list(row, "ids", at);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("in.jsonl:7: field 'ids[1]'", 0), 0u) << e.what();
  }
  EXPECT_THROW(require_int(row, "n", at), InputError);
  EXPECT_THROW(require_string(row, "missing", at), InputError);
}

TEST(Utf8, AcceptsValidRejectsInvalid) {
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("na\xc3\xafve \xe6\x95\xb0 \xf0\x9f\x99\x82"));
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate U+D800
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xe6\x95"));          // truncated
}

}  // namespace
}  // namespace posttrain
