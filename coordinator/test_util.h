// Helpers shared by the coordinator's tests.
#ifndef ABLATE_COORDINATOR_TEST_UTIL_H_
#define ABLATE_COORDINATOR_TEST_UTIL_H_

#include <string>
#include <utility>

#include "store/test_util.h"

namespace ablate {
namespace testing {

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
