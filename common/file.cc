#include "common/file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace ablate {

namespace {

// Splits a path into its directory ("." when it has none) and its last part.
std::pair<std::string, std::string> SplitPath(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace

Status ErrnoStatus(const std::string& what, int errnum) {
  std::string message = what + ": " + std::strerror(errnum);
  switch (errnum) {
    case ENOENT:
    case ENOTDIR:
      return Status::NotFound(std::move(message));
    case EACCES:
    case EPERM:
    case EROFS:
      return Status::PermissionDenied(std::move(message));
    default:
      return Status::IOError(std::move(message));
  }
}

StatusOr<AtomicFile> AtomicFile::Create(const std::string& path) {
  const auto [dir, base] = SplitPath(path);
  if (base.empty() || base == "." || base == "..") {
    return Status::InvalidArgument("output path " + path + " names a directory, not a file");
  }
  std::string temp_path = dir + "/." + base + ".tmp-XXXXXX";
  const int fd = mkostemp(temp_path.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot write a file in directory " + dir, errno);
  AtomicFile file(path, std::move(temp_path), fd);
  // mkostemp makes the file private; the result is an ordinary data file.
  if (fchmod(fd, 0644) != 0) return ErrnoStatus("cannot set the mode of " + file.temp_path_, errno);
  return StatusOr<AtomicFile>(std::move(file));
}

AtomicFile::AtomicFile(std::string path, std::string temp_path, int fd)
    : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd) {}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : path_(std::move(other.path_)),
      temp_path_(std::move(other.temp_path_)),
      fd_(std::exchange(other.fd_, -1)) {}

AtomicFile& AtomicFile::operator=(AtomicFile&& other) noexcept {
  if (this != &other) {
    Discard();
    path_ = std::move(other.path_);
    temp_path_ = std::move(other.temp_path_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

AtomicFile::~AtomicFile() { Discard(); }

void AtomicFile::Discard() {
  if (fd_ < 0) return;
  close(fd_);
  unlink(temp_path_.c_str());
  fd_ = -1;
}

Status AtomicFile::Append(std::string_view data) {
  if (fd_ < 0) return Status::FailedPrecondition("append to " + path_ + " after it was closed");
  while (!data.empty()) {
    const ssize_t wrote = write(fd_, data.data(), data.size());
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0) return ErrnoStatus("cannot write " + temp_path_, errno);
    data.remove_prefix(static_cast<size_t>(wrote));
  }
  return Status::OK();
}

Status AtomicFile::Commit() {
  if (fd_ < 0) return Status::FailedPrecondition("commit " + path_ + " after it was closed");
  if (fsync(fd_) != 0) {
    const int fsync_errno = errno;
    Discard();
    return ErrnoStatus("cannot flush " + temp_path_ + " to disk", fsync_errno);
  }
  const int fd = std::exchange(fd_, -1);
  if (close(fd) != 0) {
    const int close_errno = errno;
    unlink(temp_path_.c_str());
    return ErrnoStatus("cannot close " + temp_path_, close_errno);
  }
  if (rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const int rename_errno = errno;
    unlink(temp_path_.c_str());
    return ErrnoStatus("cannot rename " + temp_path_ + " to " + path_, rename_errno);
  }
  // Makes the rename itself durable. Some file systems cannot sync a
  // directory; the file is in place either way, so that is not an error.
  const int dir_fd = open(SplitPath(path_).first.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return Status::OK();
}

}  // namespace ablate
