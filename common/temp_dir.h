// Fresh directories under the system's temporary directory ($TMPDIR or
// /tmp), for code and tests alike.
#ifndef ABLATE_COMMON_TEMP_DIR_H_
#define ABLATE_COMMON_TEMP_DIR_H_

#include <string>

#include "common/status.h"

namespace ablate {

// Creates "<temp dir>/<prefix>-XXXXXX" (mkdtemp) and returns its path.
StatusOr<std::string> MakeTempDirectory(const std::string& prefix);

// A MakeTempDirectory that is removed, with everything in it, when this is
// destroyed. path() is empty when it could not be created. Not copyable.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "ablate-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name.
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace ablate

#endif  // ABLATE_COMMON_TEMP_DIR_H_
