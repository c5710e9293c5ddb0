// Checks shared by the commands that read token rows (logprobs, tokenize), so one command's
// output feeds the next without anything changing silently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"

namespace posttrain::core {

class Tokenizer;

// A row giving both `text` and `input_ids`: the ids are what is used, and the text must encode to
// exactly them (with or without the post-processor's special tokens, so rows written with or
// without BOS both qualify). Throws InputError at `where` (field "text") naming the first token
// where they differ.
void check_text_matches_ids(const Tokenizer& tokenizer, const std::string& text,
                            const std::vector<int64_t>& ids, const Location& where);

// A row of `ids` for a model whose context is `max_len` tokens: returned as is when it fits;
// longer, the first max_len tokens when `truncate`, else an InputError at `where` naming both
// lengths (scoring past the trained positions gives meaningless numbers, and slowly).
std::vector<int64_t> fit_context(std::vector<int64_t> ids, int64_t max_len, bool truncate,
                                 const Location& where);

}  // namespace posttrain::core
