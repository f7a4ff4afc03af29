// Helpers shared by the coordinator's tests.
#ifndef ABLATE_COORDINATOR_TEST_UTIL_H_
#define ABLATE_COORDINATOR_TEST_UTIL_H_

#include <stdlib.h>

#include <filesystem>
#include <future>
#include <string>
#include <utility>

#include "common/status.h"

namespace ablate {
namespace testing {

// A fresh directory under the system's temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "ablate-test-XXXXXX").string();
    path_ = mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Calls `call` with a completion and waits for the status it gets.
template <typename Call>
Status Await(Call&& call) {
  auto result = std::make_shared<std::promise<Status>>();
  call([result](Status status) { result->set_value(std::move(status)); });
  return result->get_future().get();
}

// The test grid: 3 cells x 2 layer_norm x 3 inits = 18 jobs. `extra` is
// appended to the YAML (e.g. a schedule section).
inline std::string TestSpec(const std::string& name = "ablation", const std::string& extra = "") {
  return "name: " + name + R"(
data: {path: x}
grid:
  cell: [lstm, gru, mgu]
  layer_norm: [true, false]
  init: [xavier, variance_scaling, orthogonal]
)" + extra;
}

inline constexpr int kTestSpecJobs = 18;

}  // namespace testing
}  // namespace ablate

#endif  // ABLATE_COORDINATOR_TEST_UTIL_H_
