// Unicode helpers the tokenizer needs: the GPT-2 byte-to-character map used by byte-level BPE,
// NFC normalisation (through ICU), lossy UTF-8 repair as Rust's from_utf8_lossy does it (what
// Hugging Face decode returns for broken byte sequences), Python's str.strip() (what a Jinja
// `trim` filter does) and a few code-point predicates.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace posttrain::core::unicode {

// Byte b is written as the code point byte_to_char()[b] in byte-level token strings: printable
// Latin-1 bytes stand for themselves, the other 68 are shifted to U+0100.. U+0143.
const std::array<char32_t, 256>& byte_to_char();
// The inverse: a code point of a byte-level token string → its byte, or -1 when the code point
// is not one of the 256.
int char_to_byte(char32_t c);

// Appends the UTF-8 encoding of c (c must be a valid scalar value).
void append_utf8(char32_t c, std::string* out);
// Decodes the code point starting at s[*pos] (s must be valid UTF-8) and advances *pos.
char32_t next_utf8(const std::string& s, size_t* pos);
// Length in bytes of the UTF-8 sequence that starts with byte b (1 for invalid lead bytes).
int utf8_length(unsigned char b);

// NFC form of valid UTF-8 text. Returns the input unchanged (cheaply) when it is already NFC.
std::string nfc(const std::string& text);

// Valid UTF-8 where each maximal invalid subsequence of `bytes` is replaced by U+FFFD.
std::string utf8_lossy(const std::string& bytes);

// Python's str.isspace() for one code point, and str.strip() on UTF-8 text.
bool is_python_space(char32_t c);
std::string python_strip(const std::string& text);

// Unicode general category N* (Nd, Nl, No): Rust's char::is_numeric, used by Digits.
bool is_numeric(char32_t c);

}  // namespace posttrain::core::unicode

namespace posttrain::core::unicode {
// Unicode White_Space (what Rust's regex \s matches); used for added tokens' lstrip/rstrip.
bool is_white_space(char32_t c);
}  // namespace posttrain::core::unicode
