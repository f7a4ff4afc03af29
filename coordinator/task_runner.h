// TaskRunner: a thread that runs posted tasks in order, for blocking work
// (fsync, rename) that must stay off gRPC's threads and the writer thread.
#ifndef ABLATE_COORDINATOR_TASK_RUNNER_H_
#define ABLATE_COORDINATOR_TASK_RUNNER_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace ablate {

class TaskRunner {
 public:
  TaskRunner();
  // Runs the tasks already posted, then joins the thread.
  ~TaskRunner();
  TaskRunner(const TaskRunner&) = delete;
  TaskRunner& operator=(const TaskRunner&) = delete;

  // Thread-safe; must not be called once destruction began.
  void Post(std::function<void()> task);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                    // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace ablate

#endif  // ABLATE_COORDINATOR_TASK_RUNNER_H_
