// safetensors reader/writer: round trips, files made by the Python safetensors library (the
// fixtures), and hostile input: truncated files, header length past the end, offsets out of
// range or overlapping, unknown dtypes, shape/size mismatches, plus random header mutations
// that must only ever throw posttrain errors, never crash.
#include "core/checkpoint/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/error.h"
#include "model_test_util.h"

namespace posttrain::core {
namespace {

using nlohmann::json;

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), bytes.size());
}

// A file with the given header JSON text and `data_bytes` zero bytes of data.
std::string make_file(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\0');
}

// Expects opening `bytes` to throw InputError whose message contains `needle`.
void expect_rejected(const std::string& bytes, const std::string& needle) {
  const std::string path = testing::temp_dir("st") + "/bad.safetensors";
  write_bytes(path, bytes);
  try {
    SafetensorsFile f(path);
    ADD_FAILURE() << "accepted a bad file; expected error containing '" << needle << "'";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_NE(what.find(path), std::string::npos) << "error must name the file: " << what;
  }
}

TEST(Safetensors, RoundTripsFloat32AndBf16) {
  const std::string dir = testing::temp_dir("st");
  at::manual_seed(0);
  const auto a = at::randn({3, 5}), b = at::randn({7}), c = at::zeros({0, 4});
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    const std::string path = dir + "/t.safetensors";
    save_safetensors(path, {{"a", a}, {"b.x", b}, {"empty", c}}, dtype, {{"note", "hi"}});
    SafetensorsFile f(path);
    EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b.x", "empty"}));
    EXPECT_EQ(f.header().metadata.at("format"), "pt");
    EXPECT_EQ(f.header().metadata.at("note"), "hi");
    EXPECT_EQ(f.view("a").scalar_type(), dtype);
    EXPECT_TRUE(at::equal(f.read("a", at::kFloat), a.to(dtype).to(at::kFloat)));
    EXPECT_TRUE(at::equal(f.read("b.x", at::kFloat), b.to(dtype).to(at::kFloat)));
    EXPECT_EQ(f.read("empty").sizes(), at::IntArrayRef({0, 4}));
    EXPECT_THROW(f.entry("missing"), InputError);
    EXPECT_EQ(f.header().data_offset % 8, 0u);  // data section 8-aligned
  }
}

TEST(Safetensors, ViewOutlivesTheFileObject) {
  const std::string path = testing::temp_dir("st") + "/t.safetensors";
  const auto a = at::arange(12, at::kFloat).view({3, 4});
  save_safetensors(path, {{"a", a}}, at::kFloat);
  at::Tensor v;
  {
    SafetensorsFile f(path);
    v = f.view("a");
  }
  EXPECT_TRUE(at::equal(v, a));
}

TEST(Safetensors, ReadsFilesWrittenByTheSafetensorsLibrary) {
  SafetensorsFile f(testing::model_fixture("tied_plain") + "/model.safetensors");
  EXPECT_TRUE(f.contains("model.embed_tokens.weight"));
  EXPECT_FALSE(f.contains("lm_head.weight"));
  EXPECT_EQ(f.entry("model.embed_tokens.weight").shape, (std::vector<int64_t>{272, 32}));
  SafetensorsFile g(testing::model_fixture("bf16_sharded") + "/model-00001-of-00004.safetensors");
  EXPECT_EQ(g.view(g.names()[0]).scalar_type(), at::kBFloat16);
}

TEST(SafetensorsBadInput, TruncatedFiles) {
  expect_rejected("", "too short");
  expect_rejected(std::string(5, '\0'), "too short");
  const std::string path = testing::temp_dir("st") + "/ok.safetensors";
  save_safetensors(path, {{"a", at::ones({4, 4})}}, at::kFloat);
  const std::string good = file_bytes(path);
  expect_rejected(good.substr(0, 20), "past the end of the file");  // inside the header
  expect_rejected(good.substr(0, good.size() - 4), "past the end of the data");  // data cut
}

TEST(SafetensorsBadInput, HeaderLengthPastTheEnd) {
  std::string bytes = make_file("{}", 0);
  bytes[0] = 100;
  expect_rejected(bytes, "past the end of the file");
  bytes = make_file("{}", 0);
  for (int i = 0; i < 8; ++i) bytes[i] = '\xff';
  expect_rejected(bytes, "past the end of the file");
}

TEST(SafetensorsBadInput, MalformedJson) {
  expect_rejected(make_file("{\"a\": ", 0), "not valid JSON");
  expect_rejected(make_file("[1, 2]", 0), "not a JSON object");
  expect_rejected(make_file(R"({"a": 3})", 0), "not an object");
  expect_rejected(make_file(R"({"a": {"dtype": "F32", "shape": [1]}})", 4), "data_offsets");
  expect_rejected(make_file(R"({"__metadata__": {"k": 1}})", 0), "metadata");
}

TEST(SafetensorsBadInput, OffsetsOutOfRangeOrOverlapping) {
  expect_rejected(make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4),
                  "past the end of the data");
  expect_rejected(make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", 4),
                  "begin > end");
  expect_rejected(make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                            12),
                  "overlaps");
  expect_rejected(make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 4),
                  "data_offsets");
}

TEST(SafetensorsBadInput, UnknownDtypeIsRefusedByName) {
  expect_rejected(make_file(R"({"w": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})", 8),
                  "unsupported dtype 'I64'");
  expect_rejected(
      make_file(R"({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}})", 1),
      "unsupported dtype 'F8_E4M3'");
  expect_rejected(make_file(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", 4),
                  "dtype");
}

TEST(SafetensorsBadInput, ShapeSizeMismatch) {
  expect_rejected(make_file(R"({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 4]}})", 4),
                  "shape needs 6 bytes");
  expect_rejected(make_file(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4),
                  "shape");
  expect_rejected(make_file(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296],
                                      "data_offsets": [0, 4]}})",
                            4),
                  "too large");
  // The error names the tensor.
  expect_rejected(
      make_file(R"({"layer.w": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 4]}})", 4),
      "layer.w");
}

// Random byte mutations of a valid header: parsing must throw InputError or succeed with a
// consistent header; never crash or throw anything else.
TEST(SafetensorsBadInput, RandomHeaderMutationsNeverCrash) {
  const std::string path = testing::temp_dir("st") + "/ok.safetensors";
  save_safetensors(path, {{"a", at::ones({3, 4})}, {"bb", at::ones({5})}, {"c", at::ones({2, 2})}},
                   at::kBFloat16);
  const std::string good = file_bytes(path);
  std::mt19937 rng(1234);
  int accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes = good;
    const int edits = 1 + rng() % 4;
    for (int e = 0; e < edits; ++e) {
      const size_t limit = std::min<size_t>(bytes.size(), 8 + 200);
      const size_t pos = rng() % limit;
      switch (rng() % 3) {
        case 0:
          bytes[pos] = static_cast<char>(rng() % 256);
          break;
        case 1:
          bytes[pos] = "0123456789[]{},:\"-eE."[rng() % 21];
          break;
        default:
          bytes.erase(pos, 1 + rng() % 3);
          break;
      }
    }
    try {
      const auto h = parse_safetensors_header(bytes.data(), bytes.size(), bytes.size(), "mutant");
      for (const auto& e : h.entries) {
        ASSERT_LE(e.end, bytes.size() - h.data_offset);
        ASSERT_LE(e.begin, e.end);
      }
      ++accepted;
    } catch (const InputError&) {
    }
  }
  EXPECT_LT(accepted, 3000);
}

}  // namespace
}  // namespace posttrain::core
