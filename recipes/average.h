// Model averaging ("model soup"): the weighted mean of several Hugging Face checkpoints of one
// architecture, as Llama 3 did between stages. Streams tensor by tensor: inputs are memory-
// mapped and reopened per tensor, one float32 accumulator exists at a time, and the output is
// written with the streaming safetensors writer, so peak memory stays near one tensor (plus
// the page cache the kernel keeps for the files), not one model per input.
//
// What must match, or the average is refused with an error naming the input and what differs:
//  - config.json, compared as JSON with the fields that do not change the weights ignored
//    (kIgnoredConfigKeys: _name_or_path, transformers_version, torch_dtype, dtype, use_cache);
//  - the set of tensor names and every tensor's shape;
//  - the tokenizer files (kTokenizerFiles), byte for byte (SHA-256), present in all or none.
// Tensor dtypes may differ between inputs (an F32 SFT output beside a BF16 one): the mean is
// accumulated in float32 and written in the first input's dtype for that tensor.
//
// Weights: one positive finite number per input (default all 1); they are normalised to sum 1,
// so "--weights 2,1,1" means 0.5, 0.25, 0.25.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace posttrain::recipes {

// config.json keys ignored when comparing inputs.
extern const std::vector<std::string> kIgnoredConfigKeys;
// Tokenizer files compared and copied when present.
extern const std::vector<std::string> kTokenizerFiles;

struct AverageOptions {
  std::vector<std::string> inputs;  // checkpoint folders (at least 2)
  std::vector<double> weights;      // empty = uniform; else one > 0 per input
  std::string output;               // folder to write; must not be one of the inputs
  // A non-empty `output` is refused (UsageError) unless set; then its weight files are
  // replaced and the copied files overwritten (other files stay).
  bool overwrite = false;
};

struct AverageResult {
  std::vector<double> weights;     // normalised, summing to 1
  int64_t tensors = 0;             // tensors written
  int64_t parameters = 0;          // elements written
  uint64_t bytes = 0;              // bytes of tensor data written
  std::vector<std::string> files;  // weight files written (basenames)
};

// Parses "w1,w2,..." into numbers (UsageError naming the bad item).
std::vector<double> parse_weights(const std::string& text);

// Validates the inputs (see above) and writes the average to options.output: the weights with
// the first input's sharding (same file names and tensor-to-file assignment, index file
// included), the first input's config.json, generation_config.json and tokenizer files.
// Throws UsageError for bad options, InputError for mismatched inputs, IoError for I/O.
AverageResult average_checkpoints(const AverageOptions& options);

// Records `output` in the store at `store_path` as a checkpoint of stage "average", with the
// inputs as parents (each registered with stage "external" when the store does not know it yet)
// and the normalised weights. Paths are stored canonical (absolute). `round`: nullopt = the
// highest round among known parents (0 when none). Returns the new checkpoint's id.
int64_t record_average(const std::string& store_path, const AverageOptions& options,
                       const AverageResult& result, std::optional<int> round = std::nullopt);

}  // namespace posttrain::recipes
