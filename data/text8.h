// The text8 data module: cleaning any text or HTML into the text8 alphabet
// (Matt Mahoney's wikifil.pl rules), preparing a cleaned file, reading a
// corpus and its 90/5/5 split, and turning bytes into model symbols.
// Needs only the C++ standard library and POSIX: it is built on GPU boxes
// that have nothing but a compiler and LibTorch.
#ifndef ABLATE_DATA_TEXT8_H_
#define ABLATE_DATA_TEXT8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/file.h"
#include "common/status.h"

namespace ablate::text8 {

// ---------------------------------------------------------------------------
// Cleaning

// Streaming cleaner with wikifil.pl's rules. wikifil reads records that end
// at each '>' written in the input, and cleans each record on its own:
//  1. A tag written in the input, '<' up to the next '>', is removed, even
//     across lines (wikifil's "<.*>" stops at a newline, so it keeps the text
//     of a tag or comment that spans lines).
//  2. "&amp;" becomes '&'; then "&lt;" and "&gt;" become '<' and '>' (two
//     passes, as wikifil's substitutions: "&amp;lt;" gives '<').
//  3. A tag that decoding made, '<' up to the next '>' in the same record, is
//     removed. Wikipedia's XML escapes wikitext markup this way.
//  4. Any other entity, '&' + 1..kMaxEntityNameBytes letters, digits or '#' +
//     ';', becomes a space. (wikifil's "&[^;]*;" is unbounded; the bound keeps
//     "AT&T is big; x" from losing "T is big".)
//  5. A-Z become a-z; each digit becomes its own word ("1999" gives
//     " one nine nine nine "); every other byte, UTF-8 included, is a space;
//     runs of spaces become one.
// A record end is a word end, and nothing pending in steps 2-4 crosses it:
// "<li>one</li><li>two</li>" gives " one two" but "&lt;i&gt;Star&lt;/i&gt;s"
// gives " stars", and "x &lt;y<br>z &gt; w" gives " x y z w". A '<' with no
// '>' within kMaxTagBytes bytes, or before its record or the input ends, is
// text ("a < b" gives " a b").
// Output: one space, then the words separated by single spaces, no trailing
// space; "" when the input has no letters or digits. That is what wikifil
// prints, and why text8 starts with " anarchism". The Wikipedia-specific rules
// (keeping only <text> elements, dropping [[links]], {{templates}}, <ref>s and
// #REDIRECT pages) are not applied.
//
// Feeding an input in chunks of any sizes gives the same output as feeding it
// at once; memory stays bounded by kMaxTagBytes. Not thread-safe.
class Cleaner {
 public:
  // Longest tag body (bytes between '<' and '>') that is removed as a tag.
  static constexpr size_t kMaxTagBytes = 64 * 1024;
  // Longest entity name (bytes between '&' and ';') that becomes a space.
  static constexpr size_t kMaxEntityNameBytes = 32;

  // Appends the cleaned text of `chunk` that is final to *out.
  void Feed(std::string_view chunk, std::string* out);
  // Appends what is still held back (an unfinished tag or entity) to *out and
  // resets the cleaner, so the next Feed starts a new document.
  void Finish(std::string* out);

 private:
  // The steps above, each passing bytes to the next.
  void StripWrittenTag(char c, std::string* out);
  void AbandonWrittenTag(std::string* out);
  void EndRecord(std::string* out);
  void DecodeAmp(char c, std::string* out);
  void DecodeLtGt(char c, std::string* out);
  void StripDecodedTag(char c, std::string* out);
  void AbandonDecodedTag(std::string* out);
  void BlankEntity(char c, std::string* out);
  void Emit(char c, std::string* out);

  bool written_tag_open_ = false;
  std::string written_tag_;  // its body, kept in case it never closes
  std::string amp_;          // a proper prefix of "&amp;" read so far
  std::string ltgt_;         // a proper prefix of "&lt;" or "&gt;" read so far
  bool decoded_tag_open_ = false;
  std::string decoded_tag_;    // its body, kept in case it never closes
  std::string entity_;         // '&' and the entity name read so far
  bool space_pending_ = true;  // a space goes before the next letter
};

// Cleans a whole text at once.
std::string Clean(std::string_view text);

struct PrepareStats {
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
};

// Cleans `in_path` ("-" is stdin) into `out_path`. The output is written to a
// temporary file in out_path's directory, fsynced and renamed into place, so a
// failure leaves no partial file and any old out_path untouched. Errors name
// the path: NotFound for a missing input or output directory,
// PermissionDenied, Unavailable for other I/O errors, InvalidArgument for an
// input that cleans to nothing. `stats` may be null.
Status PrepareFile(const std::string& in_path, const std::string& out_path, PrepareStats* stats);

// One line for `data prepare`: where the text came from, where it went, sizes.
std::string FormatPrepareSummary(const std::string& in_path, const std::string& out_path,
                                 const PrepareStats& stats);

// ---------------------------------------------------------------------------
// Corpus

// The size of the published text8: the first 100,000,000 bytes of enwik9,
// cleaned.
inline constexpr uint64_t kText8Bytes = 100'000'000;

// text8's 90/5/5 split scaled to any length: train is [0, train_end),
// validation [train_end, validation_end), test [validation_end, size), with
// train_end = floor(size * 90 / 100) and validation_end = floor(size * 95 / 100)
// in 64-bit integers: 100,000,000 bytes split exactly 90M / 5M / 5M.
struct SplitPoints {
  uint64_t train_end = 0;
  uint64_t validation_end = 0;
};
SplitPoints SplitText8(uint64_t size);

// A text held once in memory with views of its three splits. Copies and moves
// keep the views valid (they are computed from offsets).
class Corpus {
 public:
  // Fails when `bytes` is empty or a split would be empty; `name` (a path)
  // goes into the message.
  static StatusOr<Corpus> FromBytes(std::string bytes, const std::string& name);

  std::string_view bytes() const { return bytes_; }
  std::string_view train() const { return bytes().substr(0, split_.train_end); }
  std::string_view validation() const {
    return bytes().substr(split_.train_end, split_.validation_end - split_.train_end);
  }
  std::string_view test() const { return bytes().substr(split_.validation_end); }
  const SplitPoints& split() const { return split_; }

 private:
  Corpus(std::string bytes, SplitPoints split) : bytes_(std::move(bytes)), split_(split) {}

  std::string bytes_;
  SplitPoints split_;
};

// Reads any file (normally text8 or a PrepareFile output) and splits it.
// Errors name the path: NotFound, an empty file, a split that would be empty.
StatusOr<Corpus> LoadCorpus(const std::string& path);

// ---------------------------------------------------------------------------
// Symbols

inline constexpr int kByteVocab = 256;  // symbol = byte value
inline constexpr int kText8Vocab = 27;  // ' ' -> 0, 'a'..'z' -> 1..26

// Offset of the first byte that is not a-z or space, or npos.
size_t FindNonText8Byte(std::string_view bytes);
bool IsText8Clean(std::string_view bytes);
// "0x41 'A'", or "0x0a" for a byte that does not print.
std::string DescribeByte(unsigned char byte);

// Replaces *symbols with one symbol per byte of `bytes` for a model with
// `vocab` symbols. vocab 256 is the identity; vocab 27 maps ' ' to 0 and
// 'a'..'z' to 1..26, and any other byte is an InvalidArgument naming it, its
// offset and the setting: "model.vocab is 27 but byte 0x41 'A' at offset 12
// is not in a-z or space". Another vocab is an InvalidArgument.
Status EncodeSymbols(std::string_view bytes, int vocab, std::vector<uint8_t>* symbols);

}  // namespace ablate::text8

#endif  // ABLATE_DATA_TEXT8_H_
