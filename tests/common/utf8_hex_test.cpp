// The one UTF-8 check (common/utf8.h) and the hex codec (common/hex.h) against references
// written differently: a decoder that reads one code point at a time, and hand-written bytes.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/hex.h"
#include "common/utf8.h"

namespace posttrain {
namespace {

// Reference: decode each code point by its lead byte and check the Unicode rules (RFC 3629).
bool reference_valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
            : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? c : c & (0xFF >> (len + 1));
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b >> 6) != 2) return false;
      cp = cp << 6 | (b & 0x3F);
    }
    const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

TEST(Utf8, AgreesWithAByteByByteDecoder) {
  // Hand-picked edge cases plus random byte strings biased towards UTF-8 lead/continuation
  // bytes, at every alignment (the eight-byte ASCII skip), against the reference decoder.
  std::vector<std::string> cases = {"",
                                    "plain ascii, longer than eight bytes",
                                    "naïve 数据 🙂",
                                    "\xc0\xaf",          // overlong
                                    "\xed\xa0\x80",      // surrogate
                                    "\xf4\x90\x80\x80",  // above U+10FFFF
                                    "12345678\xe2\x82",  // truncated after an ASCII word
                                    "\xf0\x9f\x99\x82"
                                    "abcdefgh"};
  uint32_t seed = 12345;
  auto next = [&] { return seed = seed * 1664525u + 1013904223u; };
  const unsigned char pool[] = {'a',  'b',  ' ',  0x7f, 0x80, 0xbf, 0xc2, 0xc3,
                                0xe2, 0xed, 0xf0, 0xf4, 0xff, 0x9f, 0x82, 0xa0};
  for (int t = 0; t < 3000; ++t) {
    std::string s;
    int len = next() % 24;
    for (int k = 0; k < len; ++k) s.push_back(static_cast<char>(pool[(next() >> 8) % 16]));
    cases.push_back(s);
  }
  int valid = 0;
  for (const auto& s : cases) {
    for (size_t off = 0; off < 9 && off <= s.size(); ++off) {
      std::string tail = std::string(off, 'x') + s;
      EXPECT_EQ(is_valid_utf8(tail), reference_valid_utf8(tail)) << tail;
      valid += reference_valid_utf8(tail);
    }
  }
  EXPECT_GT(valid, 30);  // both answers are exercised
  EXPECT_LT(valid, static_cast<int>(cases.size()) * 5);
}

TEST(Hex, EncodesLowerCaseAndDecodesEitherCase) {
  const std::string bytes("\x00\x01\x7f\x80\xab\xff", 6);
  EXPECT_EQ(to_hex(bytes), "00017f80abff");
  EXPECT_EQ(to_hex(""), "");
  EXPECT_EQ(from_hex("00017F80ABff"), bytes);
  EXPECT_FALSE(from_hex("abc").has_value());  // odd length
  EXPECT_FALSE(from_hex("0g").has_value());   // not hex
}

}  // namespace
}  // namespace posttrain
