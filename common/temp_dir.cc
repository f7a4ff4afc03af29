#include "common/temp_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace ablate {

StatusOr<std::string> MakeTempDirectory(const std::string& prefix) {
  std::error_code error;
  const std::filesystem::path base = std::filesystem::temp_directory_path(error);
  if (error) return Status::IOError("no temporary directory: " + error.message());
  std::string pattern = (base / (prefix + "-XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) {
    return Status::IOError("cannot create a directory under " + base.string() + ": " +
                           std::strerror(errno));
  }
  return pattern;
}

TempDir::TempDir(const std::string& prefix) {
  StatusOr<std::string> made = MakeTempDirectory(prefix);
  if (made.ok()) path_ = *made;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  // A test may have taken its own write permission away.
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ignored);
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace ablate
