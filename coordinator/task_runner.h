// TaskRunner: a thread that runs posted tasks in order, for blocking work
// (fsync, rename) that must stay off gRPC's threads and the writer thread.
#ifndef ABLATE_COORDINATOR_TASK_RUNNER_H_
#define ABLATE_COORDINATOR_TASK_RUNNER_H_

#include <deque>
#include <functional>
#include <thread>

#include "common/mutex.h"

namespace ablate {

class TaskRunner {
 public:
  TaskRunner();
  // Runs the tasks already posted, then joins the thread.
  ~TaskRunner();
  TaskRunner(const TaskRunner&) = delete;
  TaskRunner& operator=(const TaskRunner&) = delete;

  // Thread-safe; must not be called once destruction began.
  void Post(std::function<void()> task) EXCLUDES(mu_);

 private:
  void Loop() EXCLUDES(mu_);

  Mutex mu_;
  CondVar wake_{&mu_};
  std::deque<std::function<void()>> tasks_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace ablate

#endif  // ABLATE_COORDINATOR_TASK_RUNNER_H_
