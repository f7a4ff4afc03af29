// Helpers shared by the store's tests and those of the parts above it.
#ifndef ABLATE_STORE_TEST_UTIL_H_
#define ABLATE_STORE_TEST_UTIL_H_

#include <future>
#include <memory>
#include <utility>

#include "common/status.h"
#include "common/temp_dir.h"

namespace ablate {
namespace testing {

using ablate::TempDir;

// Calls `call` with a completion and waits for the status it gets.
template <typename Call>
Status Await(Call&& call) {
  auto result = std::make_shared<std::promise<Status>>();
  call([result](Status status) { result->set_value(std::move(status)); });
  return result->get_future().get();
}

}  // namespace testing
}  // namespace ablate

#endif  // ABLATE_STORE_TEST_UTIL_H_
