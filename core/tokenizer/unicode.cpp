// See unicode.h. NFC goes through ICU's C API (UTF-8 → UTF-16 → normalise → UTF-8) after a
// quick check, so already-normalised text (nearly all text) costs one scan.
#include "core/tokenizer/unicode.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <vector>

#include "common/error.h"

namespace posttrain::core::unicode {

namespace {

struct ByteMaps {
  std::array<char32_t, 256> to_char{};
  std::array<int16_t, 324> to_byte{};  // indexed by code point; every mapped one is < 324
};

const ByteMaps& byte_maps() {
  static const ByteMaps maps = [] {
    ByteMaps m;
    m.to_byte.fill(-1);
    int shifted = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      m.to_char[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + shifted++);
      m.to_byte[m.to_char[b]] = static_cast<int16_t>(b);
    }
    return m;
  }();
  return maps;
}

}  // namespace

const std::array<char32_t, 256>& byte_to_char() { return byte_maps().to_char; }

int char_to_byte(char32_t c) {
  const auto& to_byte = byte_maps().to_byte;
  return c < to_byte.size() ? to_byte[c] : -1;
}

void append_utf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

int utf8_length(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

char32_t next_utf8(const std::string& s, size_t* pos) {
  auto b = static_cast<unsigned char>(s[*pos]);
  int len = utf8_length(b);
  if (*pos + len > s.size()) len = 1;
  char32_t c = len == 1 ? b : (b & (0x7F >> len));
  for (int i = 1; i < len; ++i) c = (c << 6) | (static_cast<unsigned char>(s[*pos + i]) & 0x3F);
  *pos += len;
  return c;
}

std::string nfc(const std::string& text) {
  bool ascii = true;
  for (char ch : text) {
    if (static_cast<unsigned char>(ch) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return text;
  UErrorCode status = U_ZERO_ERROR;
  const UNormalizer2* norm = unorm2_getNFCInstance(&status);
  if (U_FAILURE(status))
    throw Error(std::string("ICU NFC normaliser unavailable: ") + u_errorName(status));
  int32_t len16 = 0;
  status = U_ZERO_ERROR;
  u_strFromUTF8(nullptr, 0, &len16, text.data(), static_cast<int32_t>(text.size()), &status);
  std::vector<UChar> src(static_cast<size_t>(len16) + 1);
  status = U_ZERO_ERROR;
  u_strFromUTF8(src.data(), len16 + 1, nullptr, text.data(), static_cast<int32_t>(text.size()),
                &status);
  if (U_FAILURE(status)) throw Error(std::string("NFC: invalid UTF-8: ") + u_errorName(status));
  status = U_ZERO_ERROR;
  if (unorm2_isNormalized(norm, src.data(), len16, &status) && U_SUCCESS(status)) return text;
  std::vector<UChar> dst(static_cast<size_t>(len16) * 3 + 16);
  status = U_ZERO_ERROR;
  int32_t out16 = unorm2_normalize(norm, src.data(), len16, dst.data(),
                                   static_cast<int32_t>(dst.size()), &status);
  if (status == U_BUFFER_OVERFLOW_ERROR) {
    dst.resize(static_cast<size_t>(out16) + 1);
    status = U_ZERO_ERROR;
    out16 = unorm2_normalize(norm, src.data(), len16, dst.data(), static_cast<int32_t>(dst.size()),
                             &status);
  }
  if (U_FAILURE(status)) throw Error(std::string("NFC failed: ") + u_errorName(status));
  int32_t len8 = 0;
  status = U_ZERO_ERROR;
  u_strToUTF8(nullptr, 0, &len8, dst.data(), out16, &status);
  std::string out(static_cast<size_t>(len8), '\0');
  status = U_ZERO_ERROR;
  u_strToUTF8(out.data(), len8, nullptr, dst.data(), out16, &status);
  if (U_FAILURE(status) && status != U_STRING_NOT_TERMINATED_WARNING) {
    throw Error(std::string("NFC: UTF-8 conversion failed: ") + u_errorName(status));
  }
  return out;
}

std::string utf8_lossy(const std::string& bytes) {
  // Maximal-subpart substitution (Unicode §3.9, as Rust's from_utf8_lossy): a lead byte plus the
  // continuation bytes that could still start a valid sequence count as one bad unit.
  static const char kReplacement[] = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  const size_t n = bytes.size();
  auto at = [&](size_t k) { return static_cast<unsigned char>(bytes[k]); };
  while (i < n) {
    unsigned char b = at(i);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    int need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    }
    if (need == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    size_t j = i + 1;
    int got = 0;
    while (got < need && j < n) {
      unsigned char c = at(j);
      unsigned char l = got == 0 ? lo : 0x80, h = got == 0 ? hi : 0xBF;
      if (c < l || c > h) break;
      ++j;
      ++got;
    }
    if (got == need) {
      out.append(bytes, i, j - i);
    } else {
      out += kReplacement;
    }
    i = j;
  }
  return out;
}

bool is_python_space(char32_t c) {
  if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) return true;
  switch (c) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

std::string python_strip(const std::string& text) {
  size_t begin = 0, pos = 0;
  size_t end = 0;  // one past the last non-space code point
  bool seen = false;
  while (pos < text.size()) {
    size_t start = pos;
    char32_t c = next_utf8(text, &pos);
    if (!is_python_space(c)) {
      if (!seen) begin = start;
      seen = true;
      end = pos;
    }
  }
  return seen ? text.substr(begin, end - begin) : std::string();
}

bool is_numeric(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  int8_t type = u_charType(static_cast<UChar32>(c));
  return type == U_DECIMAL_DIGIT_NUMBER || type == U_LETTER_NUMBER || type == U_OTHER_NUMBER;
}

}  // namespace posttrain::core::unicode

namespace posttrain::core::unicode {
bool is_white_space(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)); }
}  // namespace posttrain::core::unicode
