#include "data/fetch.h"

#include <curl/curl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

#include "data/text8.h"

namespace ablate::text8 {
namespace {

// Bytes moved per read while unpacking or scanning.
constexpr size_t kChunkBytes = 1 << 20;
// A download slower than this many bytes a second for stall_timeout_s fails.
constexpr long kStallBytesPerSecond = 1000;
// Members named in the error for an archive without `text8`.
constexpr zip_int64_t kMembersToName = 5;

std::string JoinPath(const std::string& dir, const std::string& name) { return dir + "/" + name; }

// The size of a regular file, or nothing when there is none at `path`.
std::optional<uint64_t> RegularFileSize(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) return std::nullopt;
  return static_cast<uint64_t>(info.st_size);
}

bool HasVerifiedMarker(const std::string& data_dir, uint64_t expected_bytes) {
  std::ifstream marker(JoinPath(data_dir, kText8MarkerFileName));
  uint64_t verified_bytes = 0;
  return marker >> verified_bytes && verified_bytes == expected_bytes;
}

Status WriteMarker(const std::string& data_dir, uint64_t verified_bytes) {
  ABLATE_ASSIGN_OR_RETURN(AtomicFile marker,
                          AtomicFile::Create(JoinPath(data_dir, kText8MarkerFileName)));
  ABLATE_RETURN_IF_ERROR(marker.Append(std::to_string(verified_bytes) + "\n"));
  return marker.Commit();
}

Status EnsureDirectory(const std::string& dir) {
  struct stat info;
  if (stat(dir.c_str(), &info) == 0) {
    if (S_ISDIR(info.st_mode)) return Status::OK();
    return Status::FailedPrecondition("data dir " + dir + " exists but is not a directory");
  }
  if (errno != ENOENT) return ErrnoStatus("cannot use data dir " + dir, errno);
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus("cannot create data dir " + dir + " (its parent must exist)", errno);
  }
  return Status::OK();
}

// Checks bytes against the text8 format as they stream by. Failures are
// DataLoss, naming `source`.
class Text8Check {
 public:
  Text8Check(std::string source, uint64_t expected_bytes)
      : source_(std::move(source)), expected_bytes_(expected_bytes) {}

  Status Add(std::string_view chunk) {
    const size_t bad = FindNonText8Byte(chunk);
    if (bad != std::string_view::npos) {
      return Status::DataLoss(source_ + ": byte " +
                              DescribeByte(static_cast<unsigned char>(chunk[bad])) + " at offset " +
                              std::to_string(seen_bytes_ + bad) + " is not in a-z or space");
    }
    seen_bytes_ += chunk.size();
    if (seen_bytes_ > expected_bytes_) {
      return Status::DataLoss(source_ + " is longer than the expected " +
                              std::to_string(expected_bytes_) + " bytes");
    }
    return Status::OK();
  }

  Status Finish() const {
    if (seen_bytes_ == expected_bytes_) return Status::OK();
    return Status::DataLoss(source_ + " has " + std::to_string(seen_bytes_) + " bytes, expected " +
                            std::to_string(expected_bytes_));
  }

 private:
  std::string source_;
  uint64_t expected_bytes_;
  uint64_t seen_bytes_ = 0;
};

// Scans a `text8` already in the cache.
Status VerifyInPlace(const std::string& path, uint64_t expected_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot open " + path);
  Text8Check check(path, expected_bytes);
  std::string buffer(kChunkBytes, '\0');
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    ABLATE_RETURN_IF_ERROR(check.Add(std::string_view(buffer.data(), in.gcount())));
  }
  if (in.bad()) return Status::IOError("cannot read " + path);
  return check.Finish();
}

struct ZipDiscarder {
  void operator()(zip_t* archive) const { zip_discard(archive); }
};
struct ZipFileCloser {
  void operator()(zip_file_t* file) const { zip_fclose(file); }
};

// Unpacks the `text8` member of the zip at `zip_path` into data_dir, verifying
// it on the way, then writes the marker. Problems with the archive or its
// content are DataLoss naming `source`.
Status UnpackText8(const std::string& zip_path, const std::string& source,
                   const FetchOptions& options) {
  int open_error = 0;
  std::unique_ptr<zip_t, ZipDiscarder> archive(zip_open(zip_path.c_str(), ZIP_RDONLY, &open_error));
  if (archive == nullptr) {
    zip_error_t error;
    zip_error_init_with_code(&error, open_error);
    const std::string reason = zip_error_strerror(&error);
    zip_error_fini(&error);
    return Status::DataLoss(source + " is not a readable zip archive: " + reason);
  }
  const zip_int64_t index = zip_name_locate(archive.get(), kText8FileName, 0);
  if (index < 0) {
    std::string members;
    const zip_int64_t count = zip_get_num_entries(archive.get(), 0);
    for (zip_int64_t i = 0; i < count && i < kMembersToName; ++i) {
      const char* name = zip_get_name(archive.get(), static_cast<zip_uint64_t>(i), 0);
      members += (i == 0 ? "" : ", ") + std::string(name == nullptr ? "?" : name);
    }
    if (count > kMembersToName) members += ", ...";
    return Status::DataLoss("zip archive " + source + " has no member named " + kText8FileName +
                            " (members: " + (members.empty() ? "none" : members) + ")");
  }
  const std::string member = std::string(kText8FileName) + " in " + source;
  Text8Check check(member, options.expected_bytes);
  zip_stat_t info;
  if (zip_stat_index(archive.get(), static_cast<zip_uint64_t>(index), 0, &info) == 0 &&
      (info.valid & ZIP_STAT_SIZE) != 0 && info.size != options.expected_bytes) {
    return Status::DataLoss(member + " has " + std::to_string(info.size) + " bytes, expected " +
                            std::to_string(options.expected_bytes));
  }
  std::unique_ptr<zip_file_t, ZipFileCloser> file(
      zip_fopen_index(archive.get(), static_cast<zip_uint64_t>(index), 0));
  if (file == nullptr) {
    return Status::DataLoss("cannot open " + member + ": " + zip_strerror(archive.get()));
  }

  const std::string text8_path = JoinPath(options.data_dir, kText8FileName);
  ABLATE_ASSIGN_OR_RETURN(AtomicFile out, AtomicFile::Create(text8_path));
  std::string buffer(kChunkBytes, '\0');
  for (;;) {
    const zip_int64_t got = zip_fread(file.get(), buffer.data(), buffer.size());
    if (got < 0) {
      return Status::DataLoss("cannot unpack " + member + ": " + zip_file_strerror(file.get()));
    }
    if (got == 0) break;
    const std::string_view chunk(buffer.data(), static_cast<size_t>(got));
    ABLATE_RETURN_IF_ERROR(check.Add(chunk));
    ABLATE_RETURN_IF_ERROR(out.Append(chunk));
  }
  ABLATE_RETURN_IF_ERROR(check.Finish());
  ABLATE_RETURN_IF_ERROR(out.Commit());
  return WriteMarker(options.data_dir, options.expected_bytes);
}

struct CurlCleanup {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};

struct Transfer {
  AtomicFile* out;
  const ProgressFn* progress;
  Status write_status;
};

size_t WriteToFile(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  transfer->write_status = transfer->out->Append(std::string_view(data, size * count));
  // Any other count than the one given makes libcurl abort the transfer.
  return transfer->write_status.ok() ? size * count : 0;
}

int ReportProgress(void* user, curl_off_t total, curl_off_t received, curl_off_t, curl_off_t) {
  auto* transfer = static_cast<Transfer*>(user);
  (*transfer->progress)(static_cast<uint64_t>(received), static_cast<uint64_t>(total));
  return 0;
}

// Downloads options.url into `out`. HTTP errors name the status code and the
// URL; a stalled or unreachable server is DeadlineExceeded or Unavailable.
Status Download(const FetchOptions& options, const ProgressFn& progress, AtomicFile* out) {
  static std::once_flag curl_initialized;
  std::call_once(curl_initialized, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::unique_ptr<CURL, CurlCleanup> curl(curl_easy_init());
  if (curl == nullptr) return Status::Internal("cannot start libcurl for " + options.url);

  Transfer transfer{out, &progress, Status::OK()};
  char error_text[CURL_ERROR_SIZE] = "";
  CURL* handle = curl.get();
  curl_easy_setopt(handle, CURLOPT_URL, options.url.c_str());
  curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(handle, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error_text);
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, options.connect_timeout_s);
  curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, kStallBytesPerSecond);
  curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, options.stall_timeout_s);
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, WriteToFile);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &transfer);
  if (progress) {
    curl_easy_setopt(handle, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, ReportProgress);
    curl_easy_setopt(handle, CURLOPT_XFERINFODATA, &transfer);
  }

  const CURLcode code = curl_easy_perform(handle);
  if (code == CURLE_OK) return Status::OK();
  if (!transfer.write_status.ok()) return transfer.write_status;
  const std::string failed = "download of " + options.url + " failed: ";
  if (code == CURLE_HTTP_RETURNED_ERROR) {
    long http_status = 0;
    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &http_status);
    std::string message = failed + "HTTP " + std::to_string(http_status);
    return http_status == 404 ? Status::NotFound(std::move(message))
                              : Status::Unavailable(std::move(message));
  }
  const std::string reason = error_text[0] != '\0' ? error_text : curl_easy_strerror(code);
  if (code == CURLE_OPERATION_TIMEDOUT) {
    return Status(Status::kDeadlineExceeded, failed + reason);
  }
  return Status::Unavailable(failed + reason);
}

}  // namespace

StatusOr<std::string> EnsureText8(const FetchOptions& options, const ProgressFn& progress) {
  if (options.data_dir.empty()) return Status::InvalidArgument("the text8 data dir is not set");
  if (options.expected_bytes == 0) {
    return Status::InvalidArgument("the expected size of text8 must be positive");
  }
  const std::string text8_path = JoinPath(options.data_dir, kText8FileName);
  const std::optional<uint64_t> cached_bytes = RegularFileSize(text8_path);
  const bool cached_size_fits = cached_bytes == options.expected_bytes;
  if (cached_size_fits && HasVerifiedMarker(options.data_dir, options.expected_bytes)) {
    return text8_path;
  }

  ABLATE_RETURN_IF_ERROR(EnsureDirectory(options.data_dir));
  if (cached_size_fits) {
    const Status verified = VerifyInPlace(text8_path, options.expected_bytes);
    if (verified.ok()) {
      ABLATE_RETURN_IF_ERROR(WriteMarker(options.data_dir, options.expected_bytes));
      return text8_path;
    }
    // A text8 that fails verification is replaced below.
    if (verified.code() != Status::kDataLoss) return verified;
  }

  const std::string zip_path = JoinPath(options.data_dir, kText8ZipFileName);
  if (RegularFileSize(zip_path)) {
    const Status unpacked = UnpackText8(zip_path, zip_path, options);
    if (unpacked.ok()) return text8_path;
    if (unpacked.code() != Status::kDataLoss) return unpacked;
    // A bad cached zip is dropped and fetched again.
    if (unlink(zip_path.c_str()) != 0) return ErrnoStatus("cannot remove " + zip_path, errno);
  }

  ABLATE_ASSIGN_OR_RETURN(AtomicFile zip, AtomicFile::Create(zip_path));
  ABLATE_RETURN_IF_ERROR(Download(options, progress, &zip));
  ABLATE_RETURN_IF_ERROR(UnpackText8(zip.temp_path(), options.url, options));
  ABLATE_RETURN_IF_ERROR(zip.Commit());
  return text8_path;
}

}  // namespace ablate::text8

namespace ablate {

std::string DefaultDataDir() {
  const char* env = std::getenv("ABLATE_DATA_DIR");
  return env && *env ? env : "data";
}

StatusOr<std::string> ResolveCorpus(const DataConfig& data, const std::string& data_dir) {
  if (!data.path.empty()) return data.path;
  text8::FetchOptions fetch;
  fetch.data_dir = data_dir.empty() ? DefaultDataDir() : data_dir;
  fetch.url = data.url;
  return text8::EnsureText8(fetch, nullptr);
}

}  // namespace ablate
