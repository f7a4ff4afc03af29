#include "data/text8.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

namespace ablate::text8 {
namespace {

constexpr std::array<const char*, 10> kDigitNames = {"zero", "one", "two",   "three", "four",
                                                     "five", "six", "seven", "eight", "nine"};

// Bytes read from the input per Feed in PrepareFile.
constexpr size_t kPrepareChunkBytes = 1 << 20;

// Marks a byte outside the text8 alphabet in kText8Symbols.
constexpr uint8_t kNotText8 = 0xff;

constexpr std::array<uint8_t, 256> kText8Symbols = [] {
  std::array<uint8_t, 256> symbols{};
  for (auto& symbol : symbols) symbol = kNotText8;
  symbols[' '] = 0;
  for (int c = 'a'; c <= 'z'; ++c) symbols[c] = static_cast<uint8_t>(c - 'a' + 1);
  return symbols;
}();

bool IsEntityNameByte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '#';
}

// Closes a file descriptor on scope exit; -1 holds nothing.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }

 private:
  int fd_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Cleaner: one method per step, each passing bytes to the next.

void Cleaner::Feed(std::string_view chunk, std::string* out) {
  for (char c : chunk) StripWrittenTag(c, out);
}

void Cleaner::Finish(std::string* out) {
  if (written_tag_open_) AbandonWrittenTag(out);
  EndRecord(out);
  *this = Cleaner();
}

void Cleaner::StripWrittenTag(char c, std::string* out) {
  if (written_tag_open_) {
    if (c == '>') {
      written_tag_open_ = false;
      written_tag_.clear();
      EndRecord(out);
      return;
    }
    written_tag_.push_back(c);
    if (written_tag_.size() > kMaxTagBytes) AbandonWrittenTag(out);
    return;
  }
  if (c == '<') {
    written_tag_open_ = true;
    return;
  }
  DecodeAmp(c, out);
  // A '>' that closes no written tag may still close a decoded one.
  if (c == '>') EndRecord(out);
}

void Cleaner::AbandonWrittenTag(std::string* out) {
  written_tag_open_ = false;
  const std::string body = std::exchange(written_tag_, {});
  // The '<' goes on as text, where it may open a tag that decoding closes.
  DecodeAmp('<', out);
  for (char c : body) DecodeAmp(c, out);
}

void Cleaner::EndRecord(std::string* out) {
  for (char held : std::exchange(amp_, {})) DecodeLtGt(held, out);
  for (char held : std::exchange(ltgt_, {})) StripDecodedTag(held, out);
  if (decoded_tag_open_) AbandonDecodedTag(out);
  for (char held : std::exchange(entity_, {})) Emit(held, out);
  space_pending_ = true;
}

void Cleaner::DecodeAmp(char c, std::string* out) {
  constexpr std::string_view kAmp = "&amp;";
  if (!amp_.empty()) {
    if (c == kAmp[amp_.size()]) {
      amp_.push_back(c);
      if (amp_.size() == kAmp.size()) {
        amp_.clear();
        DecodeLtGt('&', out);
      }
      return;
    }
    // Not "&amp;": what was held is text. Only its first byte is '&', so no
    // other match can start inside it.
    for (char held : amp_) DecodeLtGt(held, out);
    amp_.clear();
  }
  if (c == '&') {
    amp_.push_back(c);
  } else {
    DecodeLtGt(c, out);
  }
}

void Cleaner::DecodeLtGt(char c, std::string* out) {
  if (!ltgt_.empty()) {
    const size_t held = ltgt_.size();
    const bool extends =
        (held == 1 && (c == 'l' || c == 'g')) || (held == 2 && c == 't') || (held == 3 && c == ';');
    if (extends && held < 3) {
      ltgt_.push_back(c);
      return;
    }
    if (extends) {
      const char decoded = ltgt_[1] == 'l' ? '<' : '>';
      ltgt_.clear();
      StripDecodedTag(decoded, out);
      return;
    }
    for (char text : ltgt_) StripDecodedTag(text, out);
    ltgt_.clear();
  }
  if (c == '&') {
    ltgt_.push_back(c);
  } else {
    StripDecodedTag(c, out);
  }
}

void Cleaner::StripDecodedTag(char c, std::string* out) {
  if (!decoded_tag_open_) {
    if (c == '<') {
      decoded_tag_open_ = true;
    } else {
      BlankEntity(c, out);
    }
    return;
  }
  if (c == '>') {
    decoded_tag_open_ = false;
    decoded_tag_.clear();
    return;
  }
  decoded_tag_.push_back(c);
  if (decoded_tag_.size() > kMaxTagBytes) AbandonDecodedTag(out);
}

void Cleaner::AbandonDecodedTag(std::string* out) {
  decoded_tag_open_ = false;
  const std::string body = std::exchange(decoded_tag_, {});
  BlankEntity('<', out);
  for (char c : body) BlankEntity(c, out);
}

void Cleaner::BlankEntity(char c, std::string* out) {
  if (!entity_.empty()) {
    if (c == ';' && entity_.size() > 1) {
      entity_.clear();
      Emit(' ', out);
      return;
    }
    if (IsEntityNameByte(c) && entity_.size() <= kMaxEntityNameBytes) {
      entity_.push_back(c);
      return;
    }
    for (char held : entity_) Emit(held, out);
    entity_.clear();
  }
  if (c == '&') {
    entity_.push_back(c);
  } else {
    Emit(c, out);
  }
}

void Cleaner::Emit(char c, std::string* out) {
  unsigned char byte = static_cast<unsigned char>(c);
  if (byte >= 'A' && byte <= 'Z') byte = static_cast<unsigned char>(byte - 'A' + 'a');
  if (byte >= 'a' && byte <= 'z') {
    if (space_pending_) out->push_back(' ');
    space_pending_ = false;
    out->push_back(static_cast<char>(byte));
  } else if (byte >= '0' && byte <= '9') {
    out->push_back(' ');
    out->append(kDigitNames[byte - '0']);
    space_pending_ = true;
  } else {
    space_pending_ = true;
  }
}

std::string Clean(std::string_view text) {
  Cleaner cleaner;
  std::string out;
  cleaner.Feed(text, &out);
  cleaner.Finish(&out);
  return out;
}

Status PrepareFile(const std::string& in_path, const std::string& out_path, PrepareStats* stats) {
  const bool from_stdin = in_path == "-";
  const std::string in_name = from_stdin ? "stdin" : in_path;
  int in_fd = STDIN_FILENO;
  if (!from_stdin) {
    in_fd = open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (in_fd < 0) return ErrnoStatus("cannot open input " + in_path, errno);
  }
  ScopedFd in_closer(from_stdin ? -1 : in_fd);
  ABLATE_ASSIGN_OR_RETURN(AtomicFile out, AtomicFile::Create(out_path));

  Cleaner cleaner;
  PrepareStats totals;
  std::string cleaned;
  const auto write_cleaned = [&]() {
    totals.bytes_out += cleaned.size();
    return out.Append(cleaned);
  };
  std::string buffer(kPrepareChunkBytes, '\0');
  for (;;) {
    const ssize_t got = read(in_fd, buffer.data(), buffer.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return ErrnoStatus("cannot read input " + in_name, errno);
    if (got == 0) break;
    totals.bytes_in += static_cast<uint64_t>(got);
    cleaned.clear();
    cleaner.Feed(std::string_view(buffer.data(), static_cast<size_t>(got)), &cleaned);
    ABLATE_RETURN_IF_ERROR(write_cleaned());
  }
  cleaned.clear();
  cleaner.Finish(&cleaned);
  ABLATE_RETURN_IF_ERROR(write_cleaned());
  if (totals.bytes_out == 0) {
    return Status::InvalidArgument("input " + in_name + " cleans to nothing: its " +
                                   std::to_string(totals.bytes_in) +
                                   " bytes hold no letters or digits");
  }
  ABLATE_RETURN_IF_ERROR(out.Commit());
  if (stats != nullptr) *stats = totals;
  return Status::OK();
}

std::string FormatPrepareSummary(const std::string& in_path, const std::string& out_path,
                                 const PrepareStats& stats) {
  const std::string in_name = in_path == "-" ? "stdin" : in_path;
  return "prepared " + out_path + ": " + std::to_string(stats.bytes_out) +
         " bytes of a-z and space from " + std::to_string(stats.bytes_in) + " bytes of " + in_name;
}

// ---------------------------------------------------------------------------
// Corpus

SplitPoints SplitText8(uint64_t size) {
  // size * 95 overflows only beyond 1.9e17 bytes.
  return SplitPoints{size * 90 / 100, size * 95 / 100};
}

StatusOr<Corpus> Corpus::FromBytes(std::string bytes, const std::string& name) {
  if (bytes.empty()) return Status::InvalidArgument("corpus " + name + " is empty");
  const SplitPoints split = SplitText8(bytes.size());
  const char* empty_split = nullptr;
  if (split.train_end == 0) {
    empty_split = "train";
  } else if (split.validation_end == split.train_end) {
    empty_split = "validation";
  }
  if (empty_split != nullptr) {
    return Status::InvalidArgument("corpus " + name + " has only " + std::to_string(bytes.size()) +
                                   " bytes: its 90/5/5 split would leave the " + empty_split +
                                   " split empty");
  }
  return Corpus(std::move(bytes), split);
}

StatusOr<Corpus> LoadCorpus(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open corpus " + path, errno);
  ScopedFd closer(fd);
  struct stat info;
  if (fstat(fd, &info) != 0) return ErrnoStatus("cannot stat corpus " + path, errno);
  if (!S_ISREG(info.st_mode)) {
    return Status::InvalidArgument("corpus " + path + " is not a regular file");
  }
  std::string bytes(static_cast<size_t>(info.st_size), '\0');
  size_t filled = 0;
  while (filled < bytes.size()) {
    const ssize_t got = read(fd, bytes.data() + filled, bytes.size() - filled);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return ErrnoStatus("cannot read corpus " + path, errno);
    if (got == 0) break;
    filled += static_cast<size_t>(got);
  }
  bytes.resize(filled);
  return Corpus::FromBytes(std::move(bytes), path);
}

// ---------------------------------------------------------------------------
// Symbols

size_t FindNonText8Byte(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (kText8Symbols[static_cast<unsigned char>(bytes[i])] == kNotText8) return i;
  }
  return std::string_view::npos;
}

bool IsText8Clean(std::string_view bytes) {
  return FindNonText8Byte(bytes) == std::string_view::npos;
}

std::string DescribeByte(unsigned char byte) {
  char text[16];
  if (byte >= 0x20 && byte < 0x7f) {
    std::snprintf(text, sizeof(text), "0x%02x '%c'", byte, byte);
  } else {
    std::snprintf(text, sizeof(text), "0x%02x", byte);
  }
  return text;
}

Status EncodeSymbols(std::string_view bytes, int vocab, std::vector<uint8_t>* symbols) {
  symbols->clear();
  if (vocab == kByteVocab) {
    symbols->assign(bytes.begin(), bytes.end());
    return Status::OK();
  }
  if (vocab != kText8Vocab) {
    return Status::InvalidArgument("model.vocab must be " + std::to_string(kText8Vocab) + " or " +
                                   std::to_string(kByteVocab) + ", got " + std::to_string(vocab));
  }
  symbols->resize(bytes.size());
  for (size_t i = 0; i < bytes.size(); ++i) {
    const unsigned char byte = static_cast<unsigned char>(bytes[i]);
    const uint8_t symbol = kText8Symbols[byte];
    if (symbol == kNotText8) {
      symbols->clear();
      return Status::InvalidArgument("model.vocab is 27 but byte " + DescribeByte(byte) +
                                     " at offset " + std::to_string(i) + " is not in a-z or space");
    }
    (*symbols)[i] = symbol;
  }
  return Status::OK();
}

}  // namespace ablate::text8
